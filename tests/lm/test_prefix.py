"""Prefix reuse in the embedded engine (optimas_cli/lm/prefix.py): fewer prompt tokens
evaluated, the same logits bit for bit as evaluating every prompt from scratch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optimas_cli.lm.prefix import kept_prefix

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_kept_prefix_is_the_shared_part_in_whole_blocks():
    prev = list(range(100))
    assert kept_prefix(prev, list(range(70)) + [999] * 30, 16) == 64  # 70 shared -> 64
    assert kept_prefix(prev, list(range(100)), 16) == 96  # the last token is always evaluated
    assert kept_prefix(prev, list(range(64)), 16) == 48  # 63 may be kept -> 48
    assert kept_prefix(prev, [5] + list(range(1, 100)), 16) == 0  # differs at the start
    assert kept_prefix([], list(range(100)), 16) == 0


def _prompts() -> list[str]:
    shared = README[:1000]
    return ([shared + f"\n\nQuestion {i}: what does this tool do? Answer:" for i in range(2)]
            + [README[:500] + "\nSummary:", shared + "\n\nQuestion 0: what does this tool do? Answer:"])


def _counting(llm) -> list[int]:
    evaluated, original = [0], llm.eval

    def counted(tokens):
        evaluated[0] += len(tokens)
        return original(tokens)

    llm.eval = counted
    return evaluated


@pytest.mark.slow
@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
def test_aligned_reuse_gives_the_logits_of_a_fresh_evaluation(model):
    from optimas_cli.lm.llama_load import load_llama
    from optimas_cli.lm.local import gguf_path
    from optimas_cli.lm.prefix import reuse_aligned_prefix, supports_prefix_reuse

    kw = dict(n_ctx=1024, n_batch=64, n_ubatch=64, n_threads=1, n_threads_batch=1,
              verbose=False, logits_all=True)  # logits_all: log-probs to compare
    fresh = load_llama(gguf_path(model), **kw)
    reused = load_llama(gguf_path(model), lender=fresh, **kw)
    unaligned = load_llama(gguf_path(model), lender=fresh, **kw)  # llama-cpp's own reuse
    others = (("reused", reused), ("unaligned", unaligned))
    assert supports_prefix_reuse(reused)
    reuse_aligned_prefix(reused)
    counts = {"fresh": _counting(fresh), "reused": _counting(reused)}
    worst = {"reused": 0.0, "unaligned": 0.0}
    for prompt in _prompts():
        fresh.reset()
        ref = fresh.create_completion(prompt=prompt, max_tokens=4, temperature=0, logprobs=2)
        for name, llm in others[: 2 if model.startswith("qwen") else 1]:
            out = llm.create_completion(prompt=prompt, max_tokens=4, temperature=0, logprobs=2)
            assert out["choices"][0]["text"] == ref["choices"][0]["text"] or name == "unaligned"
            a = np.asarray(ref["choices"][0]["logprobs"]["token_logprobs"])
            b = np.asarray(out["choices"][0]["logprobs"]["token_logprobs"])
            worst[name] = max(worst[name], float(np.abs(a - b).max()) if len(a) == len(b) else 1.0)
    assert worst["reused"] == 0.0  # bit for bit
    assert counts["reused"][0] < 0.6 * counts["fresh"][0]  # the shared prompts were not re-read
    if model.startswith("qwen"):
        # why the alignment: llama-cpp's own reuse moves this model's log-probs
        assert worst["unaligned"] > 1e-4


@pytest.mark.slow
def test_the_pool_reuses_prefixes_except_on_sliding_window_models():
    from optimas_cli.lm.local import LlamaPool, gguf_path

    for model, expected in (("smollm2-135m-instruct", True), ("gemma3-270m", False)):
        pool = LlamaPool(gguf_path(model), n_ctx=512, n_threads=1, instances=1)
        with pool.instance() as llm:
            assert getattr(llm, "reuses_aligned_prefix", False) is expected
        off = LlamaPool(gguf_path(model), n_ctx=512, n_threads=1, instances=1, prefix_reuse=False)
        with off.instance() as llm:
            assert not getattr(llm, "reuses_aligned_prefix", False)
