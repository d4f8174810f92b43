"""Loading llama.cpp models in-process: quietly, safely on AMX CPUs, and one mapping of
a GGUF for all the contexts that serve it.

A llama-cpp `Llama` is one model plus one context. The model (the weights, mapped from
the GGUF) is read-only once loaded, and llama.cpp lets several contexts use one model
from different threads; only a context is single-caller. `load_llama(path, lender=llm)`
builds a new `Llama` whose context runs on `llm`'s model instead of mapping the file
again: the weights are in memory once however many instances serve the model.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

_QUIET_LOG: Any = None
# llama-cpp-python's Llama() with verbose=False silences loading by dup2-ing
# /dev/null over fds 1 and 2 and restoring the saved fds afterwards. Two loads
# in parallel interleave that save/restore and can leave the process's stderr
# on /dev/null for good (seen in CI: a run printed nothing after its first
# load). Loads therefore take turns; generation still runs in parallel.
_LOAD_LOCK = threading.Lock()


def _silence_llama_cpp() -> None:
    """Route llama.cpp's C-side log to nothing but errors.

    verbose=False alone still lets warnings through (llama-cpp-python's level
    table predates ggml's renumbering), e.g. Gemma's SWA-cache notice on load.
    """
    global _QUIET_LOG
    if _QUIET_LOG is not None:
        return
    import sys

    import llama_cpp

    last = [0]

    @llama_cpp.llama_log_callback
    def quiet(level: int, text: bytes, user_data: Any) -> None:
        # ggml levels: 1 debug, 2 info, 3 warn, 4 error, 5 continues the previous line
        if level == 4 or (level == 5 and last[0] == 4):
            print(text.decode("utf-8", "replace"), end="", file=sys.stderr)
        if level != 5:
            last[0] = level

    _QUIET_LOG = quiet  # keep a reference: C holds only a raw pointer to it
    llama_cpp.llama_log_set(quiet, None)


@functools.cache
def _cpu_has_amx() -> bool:
    import llama_cpp

    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode()


class BorrowedModel:
    """The model of a loaded `Llama` (the lender), lent to the context of another one.

    Attributes come from the lender's model. Closing does nothing: the lender frees its
    model when it is collected, and every borrower holds the lender, so that happens
    only once no context uses the model any more.
    """

    def __init__(self, lender: Any) -> None:
        self.lender = lender

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lender._model, name)

    def close(self) -> None:
        pass


def load_llama(path: Path, lender: Any = None, **kwargs: Any) -> Any:
    """llama_cpp.Llama(model_path=path, **kwargs), loads taking turns (see _LOAD_LOCK).

    With `lender` (a Llama of the same file) the new instance's context runs on the
    lender's model: nothing is read or mapped again (see the module doc).

    On CPUs with AMX, llama.cpp repacks weights into its AMX buffer type, and then
    every prompt of more than one token segfaults in llama_decode (llama-cpp-python
    0.3.36, Xeon with AMX_INT8; SmolLM2 Q4_1 and Qwen2.5 Q4_K_M alike; one token at a
    time works). Llama() has no argument for llama.cpp's `use_extra_bufts` (the
    CLI's --no-repack), so on those CPUs the default model parameters it starts from
    are swapped for ones with it off, for the duration of the load.
    """
    import llama_cpp
    import llama_cpp.llama as llama_module

    if lender is not None and Path(lender.model_path).resolve() != Path(path).resolve():
        raise ValueError(f"lender serves {lender.model_path}, not {path}")
    _silence_llama_cpp()
    with _LOAD_LOCK:
        default_params = llama_module.llama_cpp.llama_model_default_params
        model_class = llama_module.internals.LlamaModel
        if _cpu_has_amx():
            def no_extra_buffers() -> Any:
                params = default_params()
                params.use_extra_bufts = False
                return params

            llama_module.llama_cpp.llama_model_default_params = no_extra_buffers
        if lender is not None:
            # Llama() builds its model as internals.LlamaModel(...): lend it the loaded one
            llama_module.internals.LlamaModel = lambda **_: BorrowedModel(lender)
        try:
            return llama_cpp.Llama(model_path=str(path), **kwargs)
        finally:
            llama_module.llama_cpp.llama_model_default_params = default_params
            llama_module.internals.LlamaModel = model_class
