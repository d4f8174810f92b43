"""Reusing the KV cache of a model instance's previous prompt, without changing any result.

llama-cpp-python's `Llama.generate` keeps the longest common prefix of the new prompt and
whatever the instance evaluated last, and evaluates only the rest. The log-probs then
depend on call history: the rest is evaluated in batches that start where the reuse
ended, and a batch's arithmetic depends on which tokens it holds (measured on
gemma3-270m before this module: 1 of 10 prompts off by up to 0.25 in log-prob).

`reuse_aligned_prefix(llm)` makes reuse exact. Every prompt is evaluated in batches of
`llm.n_batch` tokens starting at a multiple of `n_batch` (a fresh evaluation starts at 0),
and a call keeps only the part of the previous *prompt* that lies in whole batches and
that the new prompt shares. So each kept position was computed in the same batch, with the
same tokens before it, as a fresh evaluation would compute it, and the rest is evaluated
in the same batches as from scratch: the logits are bit for bit those of a fresh
evaluation (tests/lm/test_prefix.py checks it on every ladder model). Generated tokens
are never kept (they were evaluated one at a time).

Models with sliding-window attention (Gemma 3) or recurrent state evaluate every prompt
from scratch: their caches cannot always be cut back to a position.
"""

from __future__ import annotations

from typing import Any


def supports_prefix_reuse(llm: Any) -> bool:
    """Whether `llm`'s model has a KV cache that can be cut back to any position."""
    import llama_cpp

    model = llm._model.model
    return not (llama_cpp.llama_model_n_swa(model) > 0
                or llama_cpp.llama_model_is_recurrent(model)
                or llama_cpp.llama_model_is_hybrid(model))


def kept_prefix(previous: list[int], tokens: list[int], block: int) -> int:
    """How many leading tokens of `tokens` to keep from `previous` (the last prompt):
    their common prefix, at most all but the last token (whose logits must be computed),
    rounded down to a multiple of `block`."""
    common = 0
    for a, b in zip(previous, tokens[:-1], strict=False):
        if a != b:
            break
        common += 1
    return common // block * block


def reuse_aligned_prefix(llm: Any) -> None:
    """Make `llm.generate` (used by create_completion and create_chat_completion) reuse the
    previous prompt's aligned prefix and nothing else (see the module doc)."""
    generate = llm.generate
    block = llm.n_batch
    last_prompt: list[int] = []

    def aligned_generate(tokens: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal last_prompt
        tokens = list(tokens)
        # what the KV cache holds of the last prompt (a failed call may have left less)
        held = [int(t) for t in llm.input_ids[: min(llm.n_tokens, len(last_prompt))]]
        kept = kept_prefix(held if held == last_prompt[: len(held)] else [], tokens, block)
        # generate() compares the prompt with the first n_tokens evaluated tokens: this
        # many match, it keeps them and evaluates the rest from there (none: from scratch)
        llm.n_tokens = kept
        last_prompt = tokens
        return generate(tokens, *args, **kwargs)

    llm.generate = aligned_generate
    llm.reuses_aligned_prefix = True
