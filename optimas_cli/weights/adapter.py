"""A `weights` variable's value: a directory holding one LoRA adapter, in two forms.

    adapter_config.json, adapter_model.safetensors   peft's, for training (transformers)
    adapter.gguf                                     llama.cpp's, for serving (gguf_lora.py)
    optimas_adapter.json                             the base model, LoRA shape, how it was made

Directories are written once (`<run_dir>/weights/<component>/iter_NNN/`) and never
changed, so a state that names one always serves the same weights: reverting a rejected
update is keeping the previous state. Importing this module loads no torch.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optimas_cli.schema import LoraSpec

ADAPTER_GGUF = "adapter.gguf"
META = "optimas_adapter.json"


class AdapterError(ValueError):
    """A weights value that is not a usable adapter directory; the message names it."""


def adapter_gguf(directory: str | Path) -> Path:
    """The llama.cpp GGUF of the adapter saved in `directory`."""
    path = Path(directory) / ADAPTER_GGUF
    if not path.is_file():
        raise AdapterError(f"weights value {str(directory)!r} is not an adapter directory: "
                           f"no {ADAPTER_GGUF} in it")
    return path


def read_meta(directory: str | Path) -> dict[str, Any]:
    """What optimas recorded about a saved adapter (base model, LoRA shape, training)."""
    path = Path(directory) / META
    if not path.is_file():
        raise AdapterError(f"weights value {str(directory)!r} is not an adapter directory: "
                           f"no {META} in it")
    return json.loads(path.read_text())


def check_adapter(directory: str | Path, base_model: str) -> None:
    """Refuse an adapter directory that is incomplete or belongs to another base model."""
    meta = read_meta(directory)
    adapter_gguf(directory)
    if meta.get("base_model") != base_model:
        raise AdapterError(f"adapter {str(directory)!r} was trained on {meta.get('base_model')!r}, "
                           f"not on {base_model!r}")


def load_policy(base_model: str, adapter_dir: str | Path | None, lora: LoraSpec) -> tuple[Any, Any]:
    """(peft model with a trainable adapter named "default", tokenizer) on `base_model`.

    The adapter starts as the one saved in `adapter_dir` (the component's current value)
    or, for None, as a fresh LoRA of shape `lora` (B = 0: exactly the base model).
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    from optimas_cli.lm.local import load_hf_model

    model, tokenizer = load_hf_model(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter_dir is None:
        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
        return get_peft_model(model, config), tokenizer
    check_adapter(adapter_dir, base_model)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True), tokenizer


def save_adapter(model: Any, directory: str | Path, base_model: str,
                 info: dict[str, Any] | None = None) -> Path:
    """Write the model's "default" adapter (peft files, llama.cpp GGUF, meta) to `directory`.

    Written to a temporary sibling and renamed, so a directory that exists is complete.
    """
    from peft import get_peft_model_state_dict

    from optimas_cli.weights.gguf_lora import write_lora_gguf

    directory = Path(directory)
    tmp = directory.with_name(f"{directory.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp), selected_adapters=["default"])
    config = model.peft_config["default"]
    state = get_peft_model_state_dict(model, adapter_name="default")
    write_lora_gguf(tmp / ADAPTER_GGUF, state, model.get_base_model().config, config.lora_alpha)
    meta = {"base_model": base_model, "r": config.r, "alpha": config.lora_alpha,
            "target_modules": sorted(config.target_modules), **(info or {})}
    (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory
