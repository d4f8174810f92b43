"""The local reward model: a shared text backbone and one scalar head per component.

A head scores a ``(component, inputs, outputs)`` triple from the pooled backbone
features of its text (:mod:`optimas_cli.rewards.text`). Training lives in
:mod:`optimas_cli.rewards.train`; the files a model is saved to in
:mod:`optimas_cli.rewards.io`.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optimas_cli.rewards.backbone import DEFAULT_BACKBONE, load_backbone, max_positions, pooling_for
from optimas_cli.rewards.io import ADAPTER_DIR, BACKBONE_DIR, read_config, read_heads, write_model
from optimas_cli.rewards.pairs import InputSplit, PreferencePair, canonical
from optimas_cli.rewards.text import TextEncoder
from optimas_cli.stats import sign_test_greater

TIE_TOL = 1e-6  # |r(chosen) - r(rejected)| at most this is a tie, counted as wrong
CHANCE_ALPHA = 0.05  # one-sided binomial test of pairwise accuracy against 0.5
_FEAT_CACHE_LIMIT = 50_000  # backbone features kept (cleared wholesale beyond this)

Item = tuple[str, Mapping[str, Any], Mapping[str, Any]]  # (component, inputs, outputs)


class LocalRewardModel(nn.Module):
    """Shared backbone + one scalar head per component.

    Args:
        components: component name -> description (the description is part of the text).
        backbone: ``"all-MiniLM-L6-v2"`` (embedded weights) or a Hugging Face model
            name / local directory loaded with ``AutoModel``. Encoders are mean-pooled,
            decoder-only models pooled at their last token.
        max_length: token budget per scored text (special tokens included); capped at
            the backbone's number of positions.
        lora: e.g. ``{"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": [...]}``;
            when given, backbone training updates peft's LoRA adapters only.
        device: torch device.
        seed: seeds head initialization (per component, independent of component order).

    ``split`` records which inputs the model holds out (:class:`InputSplit`); it is
    saved with the model.
    """

    def __init__(
        self,
        components: Mapping[str, str],
        backbone: str = DEFAULT_BACKBONE,
        max_length: int = 256,
        lora: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        *,
        seed: int = 0,
        _weights_from: str | None = None,
        _adapter_from: str | None = None,
    ) -> None:
        super().__init__()
        if not components:
            raise ValueError("LocalRewardModel needs at least one component")
        self.trains = True  # a fit trains it (rewards/judge.py's zero-shot judge: False)
        self.backbone_name = backbone
        self.max_length_requested = int(max_length)
        self.lora_config = dict(lora) if lora else None
        self.seed = int(seed)
        # whether the backbone's weights differ from `backbone_name` (decides what save writes)
        self._backbone_modified = _weights_from is not None or _adapter_from is not None
        model, self.tokenizer, config = load_backbone(
            backbone, lora=self.lora_config, weights_from=_weights_from, adapter_from=_adapter_from
        )
        self.backbone = model
        self.pooling = pooling_for(config)
        self.max_length = max_positions(config, self.max_length_requested)
        hs = getattr(config, "hidden_size", None)
        self.hidden_size = hs if isinstance(hs, int) and hs > 0 else (
            model.get_input_embeddings().embedding_dim)
        self.text = TextEncoder(self.tokenizer, self.max_length)
        self.split = InputSplit()

        self.components: OrderedDict[str, str] = OrderedDict()
        self.heads = nn.ModuleDict()
        self._head_keys: dict[str, str] = {}
        for name, desc in components.items():
            self.add_component(name, desc)
        self._pad_id = next((v for v in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id)
                             if isinstance(v, int)), 0)
        self._feat_cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.to(torch.device(device))
        self.eval()

    @property
    def device(self) -> torch.device:
        """Where the weights live (follows ``.to(...)``)."""
        return next(self.backbone.parameters()).device

    # ------------------------------------------------------------- components

    def add_component(self, name: str, description: str) -> None:
        """Add a component with a fresh head (seeded by ``seed`` and the name)."""
        if name in self.components:
            raise ValueError(f"component {name!r} already exists")
        key = f"h{len(self._head_keys)}"
        head = nn.Linear(self.hidden_size, 1)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(name.encode()))
        with torch.no_grad():
            head.weight.normal_(0.0, 1.0 / math.sqrt(self.hidden_size), generator=g)
            head.bias.zero_()
        self.heads[key] = head.to(self.device)
        self._head_keys[name] = key
        self.components[name] = description

    def head(self, component: str) -> nn.Linear:
        try:
            return self.heads[self._head_keys[component]]  # type: ignore[return-value]
        except KeyError:
            raise KeyError(
                f"unknown component {component!r}; known: {list(self.components)}"
            ) from None

    def backbone_trainable(self) -> list[nn.Parameter]:
        """Backbone parameters a fit updates: the LoRA adapters, or every weight except the
        input embedding matrix (its rows for tokens absent from the pairs would only decay)."""
        if self.lora_config is not None:
            return [p for n, p in self.backbone.named_parameters() if "lora_" in n]
        emb = {id(p) for p in self.backbone.get_input_embeddings().parameters()}
        return [p for p in self.backbone.parameters() if id(p) not in emb]

    # ------------------------------------------------------------- features

    def encode(
        self, component: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> list[int]:
        """Token ids of one triple, every field within its own budget (see :mod:`.text`)."""
        self.head(component)  # a helpful KeyError for unknown components
        return self.text.encode(self.components[component], inputs, outputs)

    def clear_cache(self) -> None:
        """Drop cached tokenizations and backbone features (call after editing weights)."""
        self.text.clear()
        self._feat_cache.clear()

    def backbone_trained(self) -> None:
        """Note that the backbone's weights changed: cached features are stale, save writes them."""
        self._backbone_modified = True
        self._feat_cache.clear()

    def embed_ids(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Pooled backbone features [N, hidden] of token id lists (right-padded), with grad."""
        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        out = self.backbone(input_ids=ids, attention_mask=mask)
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return h[torch.arange(h.shape[0], device=h.device), mask.sum(1) - 1]

    @torch.no_grad()
    def features(self, seqs: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
        """Eval-mode features of many sequences, batched by length, in the given order.

        Cached per token sequence until the backbone changes (:meth:`backbone_trained`
        or :meth:`clear_cache`), so re-scoring candidates and head-only fits do not
        re-run the backbone.
        """
        keys = [tuple(s) for s in seqs]
        if not keys:
            return torch.empty((0, self.hidden_size), device=self.device)
        found = {k: self._feat_cache[k] for k in keys if k in self._feat_cache}
        todo = sorted({k for k in keys if k not in found}, key=len)
        if todo:
            was_training = self.training
            self.eval()
            try:
                for s in range(0, len(todo), max(1, batch_size)):
                    chunk = todo[s : s + batch_size]
                    found.update(zip(chunk, self.embed_ids(chunk).float(), strict=True))
            finally:
                self.train(was_training)
            if len(self._feat_cache) + len(todo) > _FEAT_CACHE_LIMIT:
                self._feat_cache.clear()
            if len(todo) <= _FEAT_CACHE_LIMIT:
                self._feat_cache.update((k, found[k]) for k in todo)
        return torch.stack([found[k] for k in keys])

    def apply_heads(self, feats: torch.Tensor, comps: Sequence[str]) -> torch.Tensor:
        """Scores [N]: row i of ``feats`` through the head of ``comps[i]``."""
        r = feats.new_zeros(feats.shape[0])
        idx_by: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(comps):
            idx_by[c].append(i)
        for c, idx in idx_by.items():
            t = torch.tensor(idx, device=feats.device)
            r = r.index_copy(0, t, self.head(c)(feats.index_select(0, t)).squeeze(-1))
        return r

    def forward(self, seqs: Sequence[Sequence[int]], comps: Sequence[str]) -> torch.Tensor:
        return self.apply_heads(self.embed_ids(seqs), comps)

    # ------------------------------------------------------------- scoring

    def score_items(self, items: Sequence[Item], batch_size: int = 32) -> list[float]:
        """LRF scores of (component, inputs, outputs) triples (eval mode, no grad)."""
        if not items:
            return []
        feats = self.features([self.encode(c, i, o) for c, i, o in items], batch_size)
        with torch.inference_mode():
            r = self.apply_heads(feats, [c for c, _, _ in items])
        return [float(x) for x in r.cpu()]

    def score(
        self,
        component: str,
        inputs_list: Sequence[Mapping[str, Any]] | Mapping[str, Any],
        outputs_list: Sequence[Mapping[str, Any]],
        batch_size: int = 32,
    ) -> list[float]:
        """LRF scores of ``outputs_list[i]`` given ``inputs_list[i]`` (eval mode, no grad).

        ``inputs_list`` may be a single dict shared by every output.
        """
        self.head(component)
        if isinstance(inputs_list, Mapping):
            inputs_list = [inputs_list] * len(outputs_list)
        if len(inputs_list) != len(outputs_list):
            raise ValueError(
                f"{len(inputs_list)} inputs but {len(outputs_list)} outputs; they pair up 1:1"
            )
        items = [(component, i, o) for i, o in zip(inputs_list, outputs_list, strict=True)]
        return self.score_items(items, batch_size)

    def evaluate(
        self, pairs: Sequence[PreferencePair], batch_size: int = 32
    ) -> dict[str, dict[str, Any]]:
        """Per component: how well the LRF agrees with the rollout scores of ``pairs``.

        ``pairwise_accuracy``: share of pairs with r(chosen) > r(rejected) (ties, |diff|
        <= 1e-6, are wrong and reported as ``tie_fraction``); ``p_value`` of a one-sided
        binomial test of that accuracy against 0.5 and ``beats_chance`` (p < 0.05);
        ``spearman`` between LRF and rollout scores over the distinct candidates (a
        candidate met with several scores gets their mean; None when undefined);
        ``sampled``: accuracy, p-value and ``beats_chance`` on the pairs of the component's
        own outputs alone (no gold answer on either side: what ranking a new prompt's
        outputs asks of the head), None when there is none.
        """
        from scipy.stats import spearmanr

        cand_index: dict[tuple[str, str, str], int] = {}
        cand_items: list[Item] = []
        cand_scores: list[list[float]] = []

        def cand(comp: str, inp: Mapping[str, Any], out: Mapping[str, Any], s: float) -> int:
            k = (comp, canonical(inp), canonical(out))
            if k not in cand_index:
                cand_index[k] = len(cand_items)
                cand_items.append((comp, inp, out))
                cand_scores.append([])
            cand_scores[cand_index[k]].append(float(s))
            return cand_index[k]

        by_comp: dict[str, list[tuple[int, int, bool]]] = defaultdict(list)
        for p in pairs:
            by_comp[p.component].append((cand(p.component, p.inputs, p.chosen, p.score_chosen),
                                         cand(p.component, p.inputs, p.rejected, p.score_rejected),
                                         p.gold))
        lrf = self.score_items(cand_items, batch_size)
        result: dict[str, dict[str, Any]] = {}
        for comp in sorted(by_comp):
            ij = by_comp[comp]
            diffs = [lrf[i] - lrf[j] for i, j, _ in ij]
            sampled = [lrf[i] - lrf[j] for i, j, gold in ij if not gold]
            cands = sorted({k for i, j, _ in ij for k in (i, j)})
            rho: float | None = None
            if len(cands) >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # constant input: NaN, reported as None
                    v = float(spearmanr([lrf[k] for k in cands],
                                        [sum(cand_scores[k]) / len(cand_scores[k]) for k in cands]
                                        ).statistic)
                rho = None if math.isnan(v) else v
            result[comp] = {**_agreement(diffs), "spearman": rho, "n_candidates": len(cands),
                            "sampled": _agreement(sampled) if sampled else None}
        return result

    # ------------------------------------------------------------- persistence

    def save(self, directory: str | Path) -> Path:
        """Write the model to ``directory`` (layout in :mod:`optimas_cli.rewards.io`)."""
        kind = "lora" if self.lora_config else ("full" if self._backbone_modified else "reference")
        config = {
            "components": dict(self.components),
            "head_keys": dict(self._head_keys),
            "backbone": self.backbone_name,
            "max_length": self.max_length_requested,
            "lora": self.lora_config,
            "pooling": self.pooling,
            "seed": self.seed,
            "hidden_size": self.hidden_size,
            "backbone_weights": kind,
            "backbone_modified": self._backbone_modified,
            "heldout_inputs": self.split.to_dict(),
        }
        return write_model(directory, config, self.head_tensors(),
                           adapter=self.backbone if kind == "lora" else None,
                           backbone=self.backbone if kind == "full" else None,
                           tokenizer=self.tokenizer)

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> LocalRewardModel:
        """A model written by :meth:`save`."""
        d = Path(directory)
        cfg = read_config(d)
        kind = cfg.get("backbone_weights", "reference")
        model = cls(
            components_of(cfg),
            backbone=cfg["backbone"],
            max_length=cfg["max_length"],
            lora=cfg.get("lora"),
            device=device,
            seed=cfg.get("seed", 0),
            _weights_from=str(d / BACKBONE_DIR) if kind == "full" else None,
            _adapter_from=str(d / ADAPTER_DIR) if kind == "lora" else None,
        )
        model.load_heads(d, cfg)
        model._backbone_modified = bool(cfg.get("backbone_modified", kind == "full"))
        model.eval()
        return model

    def head_tensors(self) -> dict[str, torch.Tensor]:
        """Every head's weight and bias, keyed as heads.safetensors stores them."""
        return {f"{key}.{pn}": t for key, mod in self.heads.items()
                for pn, t in mod.state_dict().items()}

    def load_heads(self, directory: Path, cfg: Mapping[str, Any]) -> None:
        """The heads and the held-out inputs a saved model (its lrf_config `cfg`) holds."""
        heads = read_heads(directory)
        for name, key in cfg["head_keys"].items():
            self.head(name).load_state_dict({pn: heads[f"{key}.{pn}"] for pn in ("weight", "bias")})
        self.split = InputSplit.from_dict(cfg.get("heldout_inputs"))


def components_of(cfg: Mapping[str, Any]) -> OrderedDict[str, str]:
    """A saved model's components and descriptions, in the order their heads were made."""
    key_order = sorted(cfg["head_keys"].items(), key=lambda kv: int(kv[1][1:]))
    return OrderedDict((name, cfg["components"][name]) for name, _ in key_order)


def _agreement(diffs: Sequence[float]) -> dict[str, Any]:
    """Pairwise accuracy of r(chosen) - r(rejected) values (a tie is wrong), its one-sided
    binomial p-value against 0.5 and whether it beats chance."""
    correct = sum(d > TIE_TOL for d in diffs)
    p_value = sign_test_greater(correct, len(diffs) - correct)
    return {"pairwise_accuracy": correct / len(diffs), "n_pairs": len(diffs),
            "tie_fraction": sum(abs(d) <= TIE_TOL for d in diffs) / len(diffs),
            "p_value": p_value, "beats_chance": p_value < CHANCE_ALPHA}
