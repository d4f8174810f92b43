"""A local reward whose backbone is an embedded LLM judging the output: `reward=judge`.

    reward:
      backbone: local/qwen2.5-coder-1.5b-instruct   # any embedded `local/...` model

The reward of an output is the judge's log-odds that it is correct for its input, given the
component's description ("Yes" against "No" as the next token; one llama.cpp pass per
candidate, rewards/llm_features.py), zero-shot: nothing is trained (`trains = False`), and a
fit only measures it on the held-out pairs, where rewards/trust.py decides whether the loop
may use it. Why zero-shot: on the reward benchmark (BENCHMARKS.md, "Local reward designs")
the Qwen 1.5B judge ranks a component's own outputs best of the designs measured (HotpotQA
answer_generator 0.76, PubMedQA problem_solver 0.675; MiniLM heads 0.58 and 0.61), and the
loop's Bradley-Terry fit made it no better: a head on the judge's log-odds and the output's
log-likelihood, started at the judge and fit as the loop fits (gold pairs included) fell to
0.37 on HotpotQA (gold answers are judged lower than the models' outputs) and to 0.65 on
PubMedQA; fit on own-output pairs only, 0.73 and 0.68.

The head (a weight of 1 on the log-odds) keeps LocalRewardModel's interface. Log-odds are
computed once per (component, inputs, output) and kept for the model's life; candidates of
one input share the judge prompt's prefix.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optimas_cli.rewards.io import read_config, write_model
from optimas_cli.rewards.model import LocalRewardModel, components_of
from optimas_cli.rewards.pairs import InputSplit, canonical

JUDGE_PREFIX = "local/"  # a reward backbone naming an embedded LLM is a judge
FEATURES = ("judge",)  # what each head reads
KIND = "judge"  # lrf_config.json's backbone_weights for this model


def is_judge(backbone: str) -> bool:
    return backbone.startswith(JUDGE_PREFIX)


class JudgeRewardModel(LocalRewardModel):
    """LocalRewardModel's scoring and alignment metrics over an LLM judge's log-odds.

    Args:
        components: component name -> description (the judge is shown it).
        backbone: an embedded model, ``local/...`` (optimas_cli.lm.local).
        seed: kept for the saved config (the heads are the judge, not random).
        n_threads: llama.cpp threads of the judge's pass.
    """

    def __init__(self, components: Mapping[str, str], backbone: str, *, seed: int = 0,
                 n_threads: int = 2) -> None:
        nn.Module.__init__(self)
        self.trains = False  # a fit measures the judge, and trains nothing
        if not components:
            raise ValueError("JudgeRewardModel needs at least one component")
        if not is_judge(backbone):
            raise ValueError(f"a judge backbone is an embedded model ({JUDGE_PREFIX}...), "
                             f"not {backbone!r}")
        self.backbone_name = backbone
        self.backbone = nn.Identity()  # nothing to train: the judge is frozen
        self.lora_config = None
        self.seed = int(seed)
        self.n_threads = n_threads
        self.hidden_size = len(FEATURES)
        self.pooling = KIND
        self.split = InputSplit()
        self.components: OrderedDict[str, str] = OrderedDict()
        self.heads = nn.ModuleDict()
        self._head_keys: dict[str, str] = {}
        self._items: dict[tuple[str, str, str], int] = {}
        self._triples: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = []
        self._feats: dict[int, torch.Tensor] = {}
        self._judge: Any = None  # the LlamaFeaturizer, loaded on first use
        for name, desc in components.items():
            self.add_component(name, desc)
        self.eval()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def add_component(self, name: str, description: str) -> None:
        """A head that is the judge: weight 1 on its log-odds."""
        if name in self.components:
            raise ValueError(f"component {name!r} already exists")
        key = f"h{len(self._head_keys)}"
        head = nn.Linear(self.hidden_size, 1)
        with torch.no_grad():
            head.weight.fill_(1.0)
            head.bias.zero_()
        self.heads[key] = head
        self._head_keys[name] = key
        self.components[name] = description

    def backbone_trainable(self) -> list[nn.Parameter]:
        return []

    def backbone_trained(self) -> None:
        """The judge never changes: its features stay valid."""

    def clear_cache(self) -> None:
        """Features depend on the frozen judge alone: nothing goes stale."""

    def embed_ids(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        raise NotImplementedError("the judge is frozen: its features come from features()")

    # ------------------------------------------------------------- features

    def encode(self, component: str, inputs: Mapping[str, Any],
               outputs: Mapping[str, Any]) -> list[int]:
        """A one-element key of the triple (the judge reads text, not these ids)."""
        self.head(component)  # a helpful KeyError for unknown components
        k = (component, canonical(inputs), canonical(outputs))
        if k not in self._items:
            self._items[k] = len(self._triples)
            self._triples.append((component, dict(inputs), dict(outputs)))
        return [self._items[k]]

    def judge(self) -> Any:
        if self._judge is None:
            from optimas_cli.rewards.llm_features import LlamaFeaturizer

            self._judge = LlamaFeaturizer(self.backbone_name, n_threads=self.n_threads)
        return self._judge

    @torch.no_grad()
    def features(self, seqs: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
        """[N, 1] judge log-odds of the keyed triples; the candidates of one (component,
        inputs) go through the judge together (a shared prefix)."""
        ids = [s[0] for s in seqs]
        by_input: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i in dict.fromkeys(ids):
            if i not in self._feats:
                comp, inputs, _ = self._triples[i]
                by_input[(comp, canonical(inputs))].append(i)
        for todo in by_input.values():
            comp, inputs, _ = self._triples[todo[0]]
            got = self.judge().features(self.components[comp], inputs,
                                        [self._triples[i][2] for i in todo])
            for i, f in zip(todo, got, strict=True):
                self._feats[i] = torch.tensor([f.judge], dtype=torch.float32)
        if not ids:
            return torch.empty((0, self.hidden_size))
        return torch.stack([self._feats[i] for i in ids])

    # ------------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        config = {"components": dict(self.components), "head_keys": dict(self._head_keys),
                  "backbone": self.backbone_name, "features": list(FEATURES),
                  "pooling": KIND, "seed": self.seed, "hidden_size": self.hidden_size,
                  "backbone_weights": KIND, "backbone_modified": False,
                  "heldout_inputs": self.split.to_dict()}
        return write_model(directory, config, self.head_tensors())

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> JudgeRewardModel:
        d = Path(directory)
        cfg = read_config(d)
        if cfg.get("features") != list(FEATURES):
            raise ValueError(f"{d}: a judge of features {cfg.get('features')}, this version "
                             f"reads {list(FEATURES)}; fit again")
        model = cls(components_of(cfg), cfg["backbone"], seed=cfg.get("seed", 0))
        model.load_heads(d, cfg)
        return model


def new_reward_model(components: Mapping[str, str], backbone: str, *, max_length: int = 256,
                     lora: Mapping[str, Any] | None = None, seed: int = 0) -> LocalRewardModel:
    """The reward model `reward.backbone` names: a judge for an embedded LLM, else heads on a
    text encoder (max_length and lora apply to that one only)."""
    if is_judge(backbone):
        return JudgeRewardModel(components, backbone, seed=seed)
    return LocalRewardModel(components, backbone=backbone, max_length=max_length, lora=lora,
                            seed=seed)


def load_reward_model(directory: str | Path) -> LocalRewardModel:
    """A reward model saved by either class, as its lrf_config.json says."""
    if read_config(directory).get("backbone_weights") == KIND:
        return JudgeRewardModel.load(directory)
    return LocalRewardModel.load(directory)
