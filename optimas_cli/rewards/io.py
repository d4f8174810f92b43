"""Files of a saved reward model.

A reward model directory holds::

    lrf_config.json     what the model is (components, backbone, ...) and which
                        inputs it holds out
    heads.safetensors   one linear head per component
    lora_adapter/       LoRA adapters, written by peft's save_pretrained   (LoRA)
    backbone/           the whole fine-tuned backbone and its tokenizer   (no LoRA)

A backbone that was never trained is stored by name only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

CONFIG_FILE = "lrf_config.json"
HEADS_FILE = "heads.safetensors"
ADAPTER_DIR = "lora_adapter"
BACKBONE_DIR = "backbone"
FORMAT_VERSION = 2  # 2: LoRA adapters saved by peft; held-out inputs recorded


def write_model(
    directory: str | Path,
    config: Mapping[str, Any],
    heads: Mapping[str, torch.Tensor],
    *,
    adapter: Any = None,
    backbone: Any = None,
    tokenizer: Any = None,
) -> Path:
    """Write a reward model; ``adapter`` is a peft model, ``backbone`` a fine-tuned one."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to("cpu").contiguous() for k, v in heads.items()},
              str(d / HEADS_FILE))
    if adapter is not None:
        adapter.save_pretrained(str(d / ADAPTER_DIR))
    if backbone is not None:
        from optimas_cli.rewards.backbone import no_progress_bars

        with no_progress_bars():
            backbone.save_pretrained(str(d / BACKBONE_DIR))
        tokenizer.save_pretrained(str(d / BACKBONE_DIR))
    cfg = {"format_version": FORMAT_VERSION, **config}
    (d / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return d


def read_config(directory: str | Path) -> dict[str, Any]:
    """The config of a saved reward model, checked against what this version can load."""
    d = Path(directory)
    cfg = json.loads((d / CONFIG_FILE).read_text())
    version = cfg.get("format_version", 1)
    if version > FORMAT_VERSION:
        raise ValueError(f"{d} was written by a newer format ({version})")
    kind = cfg.get("backbone_weights", "reference")
    if kind == "lora" and not (d / ADAPTER_DIR).is_dir():
        raise ValueError(f"{d}: LoRA adapters of format {version} cannot be loaded; fit again")
    if kind == "full" and not (d / BACKBONE_DIR).is_dir():
        raise ValueError(f"{d}: backbone_weights='full' but no {BACKBONE_DIR}/")
    return cfg


def read_heads(directory: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / HEADS_FILE))
