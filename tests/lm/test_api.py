"""litellm path: mock responses, retries with backoff, permanent errors, credentials."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from optimas_cli.lm import (
    CredentialsRejected,
    LMConfig,
    LMError,
    LMRequest,
    RunStopped,
    check_credentials,
)
from optimas_cli.lm.api import (
    MissingCredentials,
    UnknownModel,
    litellm_module,
    parse_response,
    unknown_model,
)

MODEL = "openai/gpt-4o-mini"
REQ = LMRequest(model=MODEL, prompt="Say hi")


@pytest.fixture(scope="module")
def litellm():
    return litellm_module()


def test_mock_response_chat_and_completion(mock_api, make_cfg):
    api = mock_api(lambda req, attempt: "hello there")
    lm = api.client(make_cfg("off"))
    for req in (REQ, LMRequest(model=MODEL, messages=(("system", "Be brief."), ("user", "Hi")))):
        resp = lm.complete(req)
        assert resp.text == "hello there" and not resp.cached
        assert resp.prompt_tokens > 0 and resp.completion_tokens > 0
        assert resp.cost_usd > 0  # gpt-4o-mini is in the bundled cost map


def test_unpriced_model_costs_zero(mock_api, make_cfg):
    api = mock_api(lambda req, attempt: "ok")
    resp = api.client(make_cfg("off")).complete(LMRequest(model="hosted_vllm/my-model", prompt="x"))
    assert resp.text == "ok" and resp.cost_usd == 0.0


def test_rate_limit_then_success_is_retried_with_backoff(mock_api, make_cfg):
    api = mock_api(lambda req, attempt: "litellm.RateLimitError" if attempt < 2 else "ok")
    cfg = make_cfg("off", retry_base_delay_s=1.0)
    resp = api.client(cfg).complete(REQ)
    assert resp.text == "ok" and resp.extra["attempts"] == 3
    assert len(api.sleeps) == 2
    assert 0.5 <= api.sleeps[0] <= 1.5 and 1.0 <= api.sleeps[1] <= 3.0  # exponential + jitter


def test_retries_are_bounded(mock_api, make_cfg):
    api = mock_api(lambda req, attempt: "litellm.InternalServerError")
    with pytest.raises(LMError, match="gave up after 3 attempts"):
        api.client(make_cfg("off", max_retries=2)).complete(REQ)
    assert api.calls == 3 and len(api.sleeps) == 2


def test_timeout_is_retried_then_fails(mock_api, make_cfg):
    api = mock_api(lambda req, attempt: {"mock_timeout": True, "mock_response": "late"})
    t0 = time.perf_counter()
    with pytest.raises(LMError, match="Timeout"):
        api.client(make_cfg("off", timeout_s=0.05, max_retries=1)).complete(REQ)
    assert api.calls == 2 and time.perf_counter() - t0 < 5


def test_timeout_then_success(mock_api, make_cfg):
    api = mock_api(
        lambda req, attempt: {"mock_timeout": True, "mock_response": "x"} if attempt == 0 else "ok"
    )
    assert api.client(make_cfg("off", timeout_s=0.05)).complete(REQ).text == "ok"


def test_bad_key_stops_the_run_not_retried_and_message_surfaced(mock_api, make_cfg, litellm):
    err = litellm.AuthenticationError(
        message="Incorrect API key provided: sk-bad***", llm_provider="openai", model=MODEL
    )
    api = mock_api(lambda req, attempt: err)
    with pytest.raises(CredentialsRejected, match="Incorrect API key provided") as e:
        api.client(make_cfg("off")).complete(REQ)
    assert "AuthenticationError" in str(e.value) and isinstance(e.value, RunStopped)
    assert api.calls == 1 and api.sleeps == []


def test_bad_request_not_retried(mock_api, make_cfg, litellm):
    err = litellm.ContextWindowExceededError(message="prompt too long", model=MODEL,
                                             llm_provider="openai")
    api = mock_api(lambda req, attempt: err)
    with pytest.raises(LMError, match="prompt too long"):
        api.client(make_cfg("off")).complete(REQ)
    assert api.calls == 1


def test_malformed_response(mock_api, make_cfg):
    no_content = {"choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": None}}]}
    api = mock_api(lambda req, attempt: {"mock_response": no_content})
    with pytest.raises(LMError, match="malformed response"):
        api.client(make_cfg("off")).complete(REQ)
    assert api.calls == 1  # not retried


def test_missing_key_at_call_time_stops_the_run_not_retried(mock_api, make_cfg, monkeypatch):
    # no mock: litellm reaches the real openai client, which fails before any network I/O
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    api = mock_api(lambda req, attempt: {})
    with pytest.raises(CredentialsRejected, match="OPENAI_API_KEY"):
        api.client(make_cfg("off")).complete(REQ)
    assert api.calls == 1


def test_parse_response_edge_cases():
    with pytest.raises(LMError, match="no choices"):
        parse_response(MODEL, SimpleNamespace(choices=[]))
    with pytest.raises(LMError, match="no choices"):
        parse_response(MODEL, None)
    ok = SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content="a"))],
                         usage=None)
    assert parse_response(MODEL, ok) == ("a", 0, 0)

    def reply(content, finish_reason):
        return SimpleNamespace(choices=[SimpleNamespace(
            message=SimpleNamespace(content=content), finish_reason=finish_reason)], usage=None)

    with pytest.raises(LMError, match=r"empty reply \(finish_reason=stop\)"):
        parse_response(MODEL, reply(" \n", "stop"))
    with pytest.raises(LMError, match="refused by the provider's content filter"):
        parse_response(MODEL, reply("The first half of an ans", "content_filter"))


def test_provider_concurrency_limit(mock_api, make_cfg):
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def script(req, attempt):  # runs inside the provider semaphore
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return "ok"

    lm = mock_api(script).client(make_cfg("off", max_concurrency=2))
    reqs = [LMRequest(model="anthropic/claude-3-5-haiku-20241022", prompt=f"q{i}") for i in range(8)]
    with ThreadPoolExecutor(8) as ex:
        assert all(r.text == "ok" for r in ex.map(lm.complete, reqs))
    assert state["max"] == 2


def test_check_credentials_names_missing_env_vars(monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MY_KEY"):
        monkeypatch.delenv(var, raising=False)
    cfg = LMConfig()
    models = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022",
              "local/smollm2-135m-instruct", "ollama/llama3"]
    with pytest.raises(MissingCredentials) as e:
        check_credentials(models, cfg)
    msg = str(e.value)
    assert "OPENAI_API_KEY" in msg and "ANTHROPIC_API_KEY" in msg
    assert "ollama" not in msg and "smollm2" not in msg

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    check_credentials(models, cfg)  # all present: no error

    with pytest.raises(MissingCredentials, match="MY_KEY"):
        check_credentials(["openai/gpt-4o-mini"], LMConfig(api_key_env="MY_KEY"))


def test_check_credentials_hosted_vllm_and_unknown_local(monkeypatch):
    monkeypatch.delenv("HOSTED_VLLM_API_BASE", raising=False)
    with pytest.raises(MissingCredentials, match="api_base"):
        check_credentials(["hosted_vllm/m"], LMConfig())
    check_credentials(["hosted_vllm/m"], LMConfig(api_base="http://localhost:8000/v1"))
    with pytest.raises(UnknownModel, match="local/smollm2-135m-instruct"):
        check_credentials(["local/nope"], LMConfig())


@pytest.mark.parametrize("model,says", [
    ("local/does-not-exist", "no embedded model of that name (the local/ models: "
                             "local/gemma3-270m, "),
    ("local/smollm2-135m", "did you mean local/smollm2-135m-instruct?"),
    ("gpt-4o-mni", "litellm cannot tell its provider"),
    ("foo/bar", "litellm knows no provider 'foo'"),
])
def test_an_unknown_model_is_unknown_not_a_missing_key(monkeypatch, model, says):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UnknownModel) as e:  # before any key is asked for
        check_credentials(["openai/gpt-4o-mini", model], LMConfig())
    assert not isinstance(e.value, MissingCredentials)
    assert str(e.value).startswith(f"unknown model {model!r}: ") and says in str(e.value)
    assert "OPENAI_API_KEY" not in str(e.value)
    for known in ("openai/gpt-4o-mini", "gpt-4o-mini", "ollama/llama3", "hosted_vllm/m",
                  "azure/my-deployment", "local/gemma3-270m"):
        assert unknown_model(known) is None, known


def test_replay_mode_needs_no_api_key(monkeypatch):
    """A replay never reaches a provider, so CI can replay a recorded API run without the key."""
    from optimas_cli.config import PROJECT_CONFIGS, load
    from optimas_cli.runtime import make_lm

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = PROJECT_CONFIGS / "hotpotqa.yaml"
    with pytest.raises(MissingCredentials, match="OPENAI_API_KEY"):
        make_lm(load(config, ["lm=openai"]))
    lm = make_lm(load(config, ["lm=openai", "lm.cache.mode=replay"]))
    assert lm.cache.mode == "replay"
