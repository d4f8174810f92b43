"""A peft LoRA adapter as a llama.cpp LoRA GGUF, so llama.cpp serves it on the quantized base.

The format is llama.cpp's (as its convert_lora_to_gguf.py writes it): `general.type =
adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and per adapted base tensor two
tensors named after the base tensor's GGUF name, `<name>.lora_a` (r x in) and
`<name>.lora_b` (out x r). llama.cpp scales the product by alpha / r, as peft does.

Our transformers model is dequantized from the same GGUF, and transformers undoes the
row permutation llama.cpp's converter applies to Llama's q/k projections (rotary
layout). The delta B @ A of those projections must be permuted back, which permuting
B's rows does exactly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

# transformers model_type -> gguf architecture; q/k rows permuted by llama.cpp's converter
ARCHITECTURES: dict[str, tuple[str, bool]] = {
    "llama": ("LLAMA", True),
    "qwen2": ("QWEN2", False),
    "gemma3_text": ("GEMMA3", False),
    "gemma3": ("GEMMA3", False),
}

_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<base>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


class AdapterExportError(ValueError):
    """The adapter cannot be written as a llama.cpp LoRA GGUF; the message says why."""


def llama_permute(rows: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's converter permutation of q/k projection rows (HF -> GGUF layout)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    shape = rows.shape
    return (rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
            .swapaxes(1, 2).reshape(shape))


def lora_tensors(state: dict[str, Any], config: Any) -> dict[str, np.ndarray]:
    """GGUF tensor name -> float32 array, from a peft adapter state dict (keys as peft saves them).

    `config` is the base model's transformers config (model_type, layers, heads).
    """
    import gguf

    model_type = config.model_type
    if model_type not in ARCHITECTURES:
        raise AdapterExportError(f"model_type {model_type!r} has no llama.cpp LoRA mapping; "
                                 f"supported: {sorted(ARCHITECTURES)}")
    arch_name, permutes = ARCHITECTURES[model_type]
    arch = getattr(gguf.MODEL_ARCH, arch_name)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        m = _LORA_KEY.match(key)
        if m is None:
            raise AdapterExportError(f"adapter tensor {key!r} is not a LoRA A/B matrix")
        pairs.setdefault(m["base"], {})[m["ab"]] = value.detach().float().cpu().numpy()
    out: dict[str, np.ndarray] = {}
    for base, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise AdapterExportError(f"adapter has only lora_{''.join(ab)} for {base!r}")
        hf_name = base
        gguf_name = names.get_name(hf_name + ".weight", try_suffixes=(".weight",))
        if gguf_name is None:
            raise AdapterExportError(f"no GGUF tensor for {hf_name!r} ({arch_name})")
        a, b = ab["A"], ab["B"]
        if permutes and hf_name.endswith("self_attn.q_proj"):
            b = llama_permute(b, config.num_attention_heads, config.num_attention_heads)
        elif permutes and hf_name.endswith("self_attn.k_proj"):
            b = llama_permute(b, config.num_attention_heads, config.num_key_value_heads)
        stem = gguf_name.removesuffix(".weight")
        out[f"{stem}.weight.lora_a"] = np.ascontiguousarray(a, dtype=np.float32)
        out[f"{stem}.weight.lora_b"] = np.ascontiguousarray(b, dtype=np.float32)
    if not out:
        raise AdapterExportError("the adapter has no LoRA tensors")
    return out


def write_lora_gguf(path: Path, state: dict[str, Any], config: Any, alpha: float) -> Path:
    """Write the adapter `state` (peft keys) as a llama.cpp LoRA GGUF at `path`."""
    import gguf

    tensors = lora_tensors(state, config)
    arch_name, _ = ARCHITECTURES[config.model_type]
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, arch_name)])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
