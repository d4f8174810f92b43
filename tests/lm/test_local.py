"""Embedded llama.cpp engine on the real packaged models (offline). Mostly slow."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from optimas_cli.lm import LMClient, LMError, LMRequest
from optimas_cli.lm.local import LOCAL_MODELS, gguf_path, sampling_seed

SMOL = "local/smollm2-135m-instruct"
GEMMA = "local/gemma3-270m"


def test_registry_and_unknown_name():
    assert {"smollm2-135m-instruct", "gemma3-270m"} <= set(LOCAL_MODELS)
    with pytest.raises(LMError, match="known local models: local/gemma3-270m"):
        gguf_path("local/nope")


def test_smollm2_file_found_without_download():
    p = gguf_path(SMOL)
    assert p.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and p.stat().st_size > 50_000_000


def test_sampling_seed_per_sample():
    seeds = {sampling_seed(LMRequest(model=SMOL, prompt="x", seed=s, sample_index=i))
             for s in range(3) for i in range(3)}
    assert len(seeds) == 9


def _fake_pool(instances, load):
    from optimas_cli.lm.local import LlamaPool

    pool = LlamaPool(Path("unused.gguf"), 64, 1, instances)
    pool._load = load
    return pool


def test_pool_lends_each_instance_to_one_caller_at_a_time():
    pool = _fake_pool(2, lambda: object())
    in_use, seen, lock = set(), set(), threading.Lock()

    def borrow(_):
        with pool.instance() as llm:
            with lock:
                assert id(llm) not in in_use
                in_use.add(id(llm))
                seen.add(id(llm))
            time.sleep(0.01)
            with lock:
                in_use.discard(id(llm))

    with ThreadPoolExecutor(6) as ex:
        list(ex.map(borrow, range(30)))
    assert pool._created == 2 and len(seen) == 2


def test_pool_failed_load_does_not_strand_waiters():
    calls = []

    def load():
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.2)
            raise RuntimeError("boom")
        return object()

    pool = _fake_pool(1, load)

    def use(_):
        try:
            with pool.instance():
                return "ok"
        except RuntimeError:
            return "err"

    with ThreadPoolExecutor(3) as ex:
        out = sorted(ex.map(use, range(3)))
    assert out == ["err", "ok", "ok"] and pool._created == 1


@pytest.fixture
def lm(make_cfg):
    return LMClient(make_cfg("off", local={"instances": 2}))


@pytest.mark.slow
@pytest.mark.parametrize("model", [SMOL, GEMMA])
def test_local_models_answer_offline(lm, model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = lm.complete(LMRequest(model=model, prompt="Q: What is the capital of France?\nA:",
                             max_tokens=12))
    assert r.text.strip() and "Paris" in r.text
    assert r.prompt_tokens > 0 and 0 < r.completion_tokens <= 12 and r.latency_s > 0
    assert r.cost_usd == 0.0


@pytest.mark.slow
def test_chat_vs_completion(lm):
    chat = lm.complete(LMRequest(model=SMOL, max_tokens=16, messages=(
        ("system", "Answer in one short sentence."), ("user", "What is the capital of France?"))))
    assert "Paris" in chat.text
    raw = lm.complete(LMRequest(model=SMOL, prompt="What is the capital of France?", max_tokens=16))
    # the chat template wraps the message in role markers: more prompt tokens
    assert chat.prompt_tokens > raw.prompt_tokens


@pytest.mark.slow
def test_greedy_is_deterministic_across_instances(lm):
    prompts = [f"Write a sentence about the number {i}." for i in range(4)]
    reqs = [LMRequest(model=SMOL, messages=(("user", p),), max_tokens=24) for p in prompts]
    with ThreadPoolExecutor(4) as ex:
        first = [r.text for r in ex.map(lm.complete, reqs)]
    with ThreadPoolExecutor(4) as ex:  # reversed: other instances, other history
        second = [r.text for r in ex.map(lm.complete, reqs[::-1])][::-1]
    assert first == second


@pytest.mark.slow
def test_sampling_seeded_per_sample(lm):
    def sample(i):
        return lm.complete(LMRequest(model=SMOL, prompt="My favourite animal is the",
                                     temperature=1.0, max_tokens=12, seed=7, sample_index=i)).text

    samples = [sample(i) for i in range(4)]
    assert samples == [sample(i) for i in range(4)]  # rerun: same text
    assert len(set(samples)) > 1  # different sample_index: different draws


@pytest.mark.slow
def test_stop_strings(lm):
    base = LMRequest(model=SMOL, prompt="Count: 1, 2, 3,", max_tokens=24)
    full = lm.complete(base).text
    assert "," in full
    stopped = lm.complete(LMRequest(model=SMOL, prompt=base.prompt, max_tokens=24, stop=(",",)))
    assert "," not in stopped.text and full.startswith(stopped.text)


@pytest.mark.slow
def test_concurrent_callers_share_one_pool(make_cfg):
    from optimas_cli.lm.local import get_pool

    cfg = make_cfg("off", local={"instances": 2})
    clients = [LMClient(cfg) for _ in range(2)]
    reqs = [LMRequest(model=SMOL, prompt=f"{i} + {i} =", max_tokens=6) for i in range(8)]
    with ThreadPoolExecutor(8) as ex:
        out = list(ex.map(lambda ir: clients[ir[0] % 2].complete(ir[1]), enumerate(reqs)))
    assert all(r.completion_tokens > 0 for r in out)
    pool = get_pool(SMOL, cfg.local)
    assert pool._created == 2  # loaded once per instance, not per call or per client
    assert sum(c.usage_summary()["total"]["calls"] for c in clients) == 8


@pytest.mark.slow
def test_a_pools_instances_share_one_model():
    """Two instances of a model run their contexts on one llama.cpp model (one mapping
    of the GGUF, one copy of repacked weights): same greedy output, and the second keeps
    working after the first (the lender) is gone."""
    import gc

    from optimas_cli.lm.local import LlamaPool

    pool = LlamaPool(gguf_path(SMOL), n_ctx=256, n_threads=1, instances=2)
    texts = []
    with pool.instance() as first, pool.instance() as second:
        assert first is not second and pool._created == 2
        assert first._model.model == second._model.model  # the same llama_model pointer
        assert first._ctx.ctx != second._ctx.ctx
        for llm in (first, second):
            llm.reset()
            out = llm.create_completion(prompt="The capital of France is", max_tokens=6,
                                        temperature=0)
            texts.append(out["choices"][0]["text"])
    assert texts[0] and texts[0] == texts[1]
    lender = pool._lender
    borrower = second if first is lender else first
    del first, second, lender
    pool._lender = None
    pool._free = None  # the pool's references to both instances gone
    gc.collect()
    borrower.reset()
    again = borrower.create_completion(prompt="The capital of France is", max_tokens=6,
                                       temperature=0)
    assert again["choices"][0]["text"] == texts[0]


def test_a_lender_serves_only_its_own_file(tmp_path):
    from types import SimpleNamespace

    from optimas_cli.lm.local import load_llama

    with pytest.raises(ValueError, match="lender serves"):
        load_llama(tmp_path / "other.gguf", lender=SimpleNamespace(model_path=str(gguf_path(SMOL))))


@pytest.mark.slow
def test_long_prompt_is_lm_error(make_cfg):
    lm = LMClient(make_cfg("off", local={"n_ctx": 64}))
    with pytest.raises(LMError):
        lm.complete(LMRequest(model=SMOL, prompt="word " * 200, max_tokens=4))


@pytest.mark.slow
def test_hf_conversion_is_saved_once_and_predicts_like_llama_cpp(tmp_path, monkeypatch, make_cfg):
    import torch

    from optimas_cli.lm import local

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OPTIMAS_MODELS_DIR", str(tmp_path))  # fresh conversion
    conversions = []
    convert = local._as_plain_model  # runs once per GGUF conversion, not on a reload
    monkeypatch.setattr(local, "_as_plain_model", lambda m: conversions.append(1) or convert(m))
    model, tok = local.load_hf_model(SMOL)
    (saved,) = [p for p in (tmp_path / "hf").iterdir() if p.is_dir()]
    files = {p.name: p.stat().st_mtime_ns for p in saved.iterdir()}
    assert conversions == [1] and "config.json" in files
    reloaded, tok2 = local.load_hf_model(SMOL)  # the saved conversion, not the GGUF again
    assert conversions == [1]
    assert {p.name: p.stat().st_mtime_ns for p in saved.iterdir()} == files  # not rewritten
    # the converted tokenizer and model agree with llama.cpp on the same GGUF: the same prompt
    # tokens, and the top logit is llama.cpp's greedy first token (" Paris", by a wide margin)
    prompt = "The capital of France is"
    with local.get_pool(SMOL, make_cfg("off").local).instance() as llm:
        llama_ids = llm.tokenize(prompt.encode(), add_bos=True)
    ids = tok(prompt).input_ids
    assert ids == llama_ids and tok2(prompt).input_ids == ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
        assert torch.equal(reloaded(torch.tensor([ids])).logits[0, -1], logits)
    greedy = LMClient(make_cfg("off")).complete(LMRequest(model=SMOL, prompt=prompt, max_tokens=1))
    assert tok.decode([int(logits.argmax())]) == greedy.text == " Paris"


@pytest.mark.slow
def test_gemma_chat_template_keeps_system_prompt(lm):
    # the base GGUF has no template; ours folds the system prompt into the first turn
    user = ("user", "Name a colour.")
    with_sys = lm.complete(LMRequest(model=GEMMA, max_tokens=8,
                                     messages=(("system", "You are terse and helpful."), user)))
    without = lm.complete(LMRequest(model=GEMMA, max_tokens=8, messages=(user,)))
    assert with_sys.prompt_tokens > without.prompt_tokens + 4


@pytest.mark.slow
def test_parallel_loads_leave_stderr_alone():
    """llama-cpp-python silences a load by swapping fds 1/2 for /dev/null and back.

    Parallel loads used to interleave that swap and leave the process's stderr on
    /dev/null (a CI run printed nothing after its first model load).
    """
    import subprocess
    import sys

    script = f"""
import sys, threading
from optimas_cli.lm.local import LlamaPool, gguf_path
for round in range(3):
    pool = LlamaPool(gguf_path({SMOL.split('/')[1]!r}), n_ctx=256, n_threads=1, instances=4)
    barrier = threading.Barrier(4)
    def load():
        barrier.wait()
        with pool.instance():
            barrier.wait()
    threads = [threading.Thread(target=load) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert pool._created == 4
print("to stdout", flush=True)
print("to stderr", file=sys.stderr, flush=True)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "to stdout"
    assert out.stderr.strip() == "to stderr"
