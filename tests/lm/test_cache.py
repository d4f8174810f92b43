"""Response cache: keys, modes, and safety under threads and processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from optimas_cli.lm import LMError, LMRequest, LMResponse
from optimas_cli.lm.cache import ResponseCache
from optimas_cli.lm.config import CacheConfig

MOCK_MODEL = "openai/gpt-4o-mini"  # priced in litellm's bundled cost map

BASE = LMRequest(model="local/x", prompt="Q: 2+2?\nA:", temperature=0.7, max_tokens=8,
                 stop=("\n",), seed=1, sample_index=0)


def test_key_distinguishes_every_field():
    variants = [
        LMRequest(model="local/y", prompt=BASE.prompt, temperature=0.7, max_tokens=8,
                  stop=("\n",), seed=1),
        LMRequest(model="local/x", prompt="Q: 2+3?\nA:", temperature=0.7, max_tokens=8,
                  stop=("\n",), seed=1),
        LMRequest(model="local/x", messages=(("user", BASE.prompt),), temperature=0.7,
                  max_tokens=8, stop=("\n",), seed=1),
        LMRequest(model="local/x", prompt=BASE.prompt, temperature=0.8, max_tokens=8,
                  stop=("\n",), seed=1),
        LMRequest(model="local/x", prompt=BASE.prompt, temperature=0.7, max_tokens=9,
                  stop=("\n",), seed=1),
        LMRequest(model="local/x", prompt=BASE.prompt, temperature=0.7, max_tokens=8,
                  stop=("\n", "."), seed=1),
        LMRequest(model="local/x", prompt=BASE.prompt, temperature=0.7, max_tokens=8,
                  stop=(), seed=1),
        LMRequest(model="local/x", prompt=BASE.prompt, temperature=0.7, max_tokens=8,
                  stop=("\n",), seed=2),
        LMRequest(model="local/x", prompt=BASE.prompt, temperature=0.7, max_tokens=8,
                  stop=("\n",), seed=1, sample_index=1),
    ]
    keys = {BASE.key()} | {v.key() for v in variants}
    assert len(keys) == len(variants) + 1
    same = LMRequest(model="local/x", prompt="Q: 2+2?\nA:", temperature=0.7, max_tokens=8,
                     stop=("\n",), seed=1, sample_index=0)
    assert same.key() == BASE.key()


def test_roundtrip_and_default_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIMAS_CACHE_DIR", str(tmp_path / "root"))
    cache = ResponseCache(CacheConfig())
    assert cache.path.parent == tmp_path / "root" / "lm"
    assert cache.get(BASE) is None
    cache.put(BASE, LMResponse(text="4", prompt_tokens=7, completion_tokens=1, latency_s=2.0,
                               cost_usd=0.5))
    hit = cache.get(BASE)
    assert (hit.text, hit.prompt_tokens, hit.completion_tokens, hit.cost_usd) == ("4", 7, 1, 0.5)
    assert hit.cached and hit.latency_s == 0.0
    cache.close()


def test_mode_on_hits_are_free(tmp_path, mock_api, make_cfg):
    api = mock_api()
    lm = api.client(make_cfg("on", max_calls=1))
    req = LMRequest(model=MOCK_MODEL, prompt="hi")
    first = lm.complete(req, component="a")
    second = lm.complete(req, component="a")  # within max_calls=1: hits cost no budget
    assert not first.cached and second.cached
    assert second.text == first.text and api.calls == 1
    total = lm.usage_summary()["total"]
    assert total["calls"] == 1 and total["cache_hits"] == 1
    assert total["cost_usd"] == pytest.approx(first.cost_usd)


def test_mode_off_never_reads_or_writes(tmp_path, mock_api, make_cfg):
    api = mock_api()
    lm = api.client(make_cfg("off"))
    req = LMRequest(model=MOCK_MODEL, prompt="hi")
    assert lm.complete(req).text != lm.complete(req).text
    assert api.calls == 2
    assert not (tmp_path / "cache").exists()


def test_mode_replay_miss_names_model_and_prompt(tmp_path, mock_api, make_cfg):
    api = mock_api()
    req = LMRequest(model=MOCK_MODEL, prompt="What is the capital of France? Answer briefly.")
    api.client(make_cfg("on")).complete(req)
    replay = api.client(make_cfg("replay"))
    assert replay.complete(req).cached  # recorded entry replays
    with pytest.raises(LMError) as e:
        replay.complete(LMRequest(model=MOCK_MODEL, prompt="Who wrote Hamlet? Answer briefly."))
    assert MOCK_MODEL in str(e.value) and "Who wrote Hamlet" in str(e.value)
    assert api.calls == 1


def test_mode_refresh_always_calls_and_overwrites(tmp_path, mock_api, make_cfg):
    api = mock_api()
    req = LMRequest(model=MOCK_MODEL, prompt="hi")
    old = api.client(make_cfg("on")).complete(req).text
    refreshed = api.client(make_cfg("refresh")).complete(req)
    assert not refreshed.cached and refreshed.text != old
    assert api.client(make_cfg("on")).complete(req).text == refreshed.text
    assert api.calls == 2


def test_concurrent_threads(tmp_path):
    cache = ResponseCache(CacheConfig(dir=str(tmp_path)))
    reqs = [LMRequest(model="m", prompt=f"p{i}") for i in range(400)]

    def work(i):
        r = reqs[i]
        cache.put(r, LMResponse(text=f"t{i}", prompt_tokens=i))
        got = cache.get(reqs[(i * 7) % len(reqs)])
        assert got is None or got.text == f"t{(i * 7) % len(reqs)}"

    with ThreadPoolExecutor(16) as ex:
        list(ex.map(work, range(len(reqs))))
    assert len(cache) == len(reqs)
    assert all(cache.get(r).text == f"t{i}" for i, r in enumerate(reqs))
    cache.close()


_WRITER = textwrap.dedent("""
    import sys
    from optimas_cli.lm.base import LMRequest, LMResponse
    from optimas_cli.lm.cache import ResponseCache
    from optimas_cli.lm.config import CacheConfig
    cache = ResponseCache(CacheConfig(dir=sys.argv[1]))
    tag = sys.argv[2]
    for i in range(300):
        # shared keys (both processes write them) and own keys
        cache.put(LMRequest(model="m", prompt=f"shared{i}"), LMResponse(text=f"s{i}"))
        cache.put(LMRequest(model="m", prompt=f"{tag}{i}"), LMResponse(text=f"{tag}{i}"))
        assert cache.get(LMRequest(model="m", prompt=f"shared{i}")).text == f"s{i}"
    print("ok")
""")


def test_two_processes_writing(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), tag],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tag in ("a", "b")
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    cache = ResponseCache(CacheConfig(dir=str(tmp_path)))
    assert len(cache) == 900
    assert cache.get(LMRequest(model="m", prompt="b299")).text == "b299"
    cache.close()
