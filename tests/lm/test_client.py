"""LMClient: budgets, per-component accounting, thread safety, routing errors."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from optimas_cli.lm import BudgetExceeded, LMClient, LMConfig, LMError, LMRequest

MODEL = "openai/gpt-4o-mini"


def _req(i: int = 0, **kw) -> LMRequest:
    return LMRequest(model=MODEL, prompt=f"question {i}", **kw)


def test_max_calls_budget(mock_api, make_cfg):
    lm = mock_api().client(make_cfg("on", max_calls=3))
    for i in range(3):
        lm.complete(_req(i))
    with pytest.raises(BudgetExceeded, match=r"lm\.max_calls=3 reached"):
        lm.complete(_req(3))
    assert lm.complete(_req(0)).cached  # cache hits still served: they cost nothing
    assert lm.usage_summary()["total"]["calls"] == 3


def test_max_calls_under_concurrency(mock_api, make_cfg):
    lm = mock_api().client(make_cfg("off", max_calls=5))

    def call(i):
        try:
            return lm.complete(_req(i))
        except BudgetExceeded:
            return None

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(call, range(20)))
    assert sum(r is not None for r in results) == 5
    assert lm.usage_summary()["total"]["calls"] == 5


def test_max_cost_budget(mock_api, make_cfg):
    budget = 2e-4
    lm = mock_api().client(make_cfg("off", max_cost_usd=budget))
    n = 0
    with pytest.raises(BudgetExceeded, match=r"lm\.max_cost_usd=0\.0002 reached"):
        for n in range(10_000):  # noqa: B007
            lm.complete(_req(n, max_tokens=16))
    spent = lm.usage_summary()["total"]["cost_usd"]
    assert 0 < spent <= budget  # stopped before the call that could overshoot
    assert n > 1


def test_local_calls_ignore_cost_budget_estimate():
    # local models cost 0: the cost budget never blocks them (checked without loading one)
    lm = LMClient(LMConfig(max_cost_usd=1.0, cache={"mode": "off"}))
    assert lm._reserve(LMRequest(model="local/smollm2-135m-instruct", prompt="x")) == 0.0


def test_accounting_per_component_and_json(mock_api, make_cfg):
    lm = mock_api().client(make_cfg("on"))
    before = lm.snapshot()
    a1 = lm.complete(_req(1), component="retriever_query")
    a2 = lm.complete(_req(2), component="retriever_query")
    b1 = lm.complete(_req(3), component="answer")
    lm.complete(_req(1), component="answer")  # cache hit, attributed to "answer"
    lm.complete(_req(4))  # untagged
    s = json.loads(json.dumps(lm.usage_summary()))
    rq, ans = s["by_component"]["retriever_query"], s["by_component"]["answer"]
    assert (rq["calls"], rq["cache_hits"]) == (2, 0)
    assert (ans["calls"], ans["cache_hits"]) == (1, 1)
    assert rq["prompt_tokens"] == a1.prompt_tokens + a2.prompt_tokens
    assert rq["completion_tokens"] == a1.completion_tokens + a2.completion_tokens
    assert ans["cost_usd"] == pytest.approx(b1.cost_usd)
    assert s["by_component"]["(untagged)"]["calls"] == 1
    tot = s["total"]
    assert (tot["calls"], tot["cache_hits"]) == (4, 1)
    assert tot["cost_usd"] == pytest.approx(sum(v["cost_usd"] for v in s["by_component"].values()))
    assert tot["latency_s"] >= rq["latency_s"]
    delta = lm.snapshot() - before
    assert delta.calls == 4 and delta.cache_hits == 1


def test_failed_call_counts_as_call_and_error(mock_api, make_cfg):
    lm = mock_api(lambda r, a: "litellm.InternalServerError").client(
        make_cfg("on", max_retries=0, max_calls=1))
    with pytest.raises(LMError):
        lm.complete(_req(), component="c")
    c = lm.usage_summary()["by_component"]["c"]
    assert (c["calls"], c["errors"], c["prompt_tokens"]) == (1, 1, 0)
    with pytest.raises(BudgetExceeded):  # the failed attempt used the budget
        lm.complete(_req(1))


def test_unknown_local_model_lists_known(make_cfg):
    lm = LMClient(make_cfg("off"))
    with pytest.raises(LMError) as e:
        lm.complete(LMRequest(model="local/llama-70b", prompt="x"))
    assert "local/smollm2-135m-instruct" in str(e.value) and "local/gemma3-270m" in str(e.value)


def test_replay_miss_is_not_a_call(make_cfg):
    lm = LMClient(make_cfg("replay", max_calls=1))
    with pytest.raises(LMError, match="replay"):
        lm.complete(LMRequest(model="local/smollm2-135m-instruct", messages=(("user", "hey"),)))
    assert lm.usage_summary()["total"]["calls"] == 0
