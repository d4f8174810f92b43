"""The cache key of an API request includes where it goes (api_base) and the endpoint, so
one server's answers are never served for another's; embedded-model keys are unchanged."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from optimas_cli.lm import LMClient, LMConfig, LMError, LMRequest
from optimas_cli.lm.cache import DB_NAME

REPRODUCE_DB = Path(__file__).resolve().parents[2] / "bench" / "reproduce" / DB_NAME
MODEL = "openai/served-model"
REQ = LMRequest(model=MODEL, messages=(("user", "Capital of Kenya?"),), max_tokens=8)


def dead_base() -> str:
    """An OpenAI-style base URL on a 127.0.0.1 port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_the_recorded_reproduce_cache_still_answers_every_embedded_request(tmp_path):
    """Embedded (local/) requests keep the keys they were recorded under: `make reproduce`
    replays bench/reproduce/responses.sqlite3, which must never be re-recorded for a key
    change."""
    shutil.copy(REPRODUCE_DB, tmp_path / DB_NAME)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        rows = db.execute("SELECT request, text FROM responses").fetchall()
    lm = LMClient(LMConfig(cache={"mode": "replay", "dir": str(tmp_path)}))
    for request, text in rows:
        d = json.loads(request)
        d["stop"] = tuple(d["stop"])
        d["messages"] = tuple(map(tuple, d["messages"])) if d["messages"] else None
        assert lm.complete(LMRequest(**d)).text == text  # a miss would raise LMError
    assert lm.usage_summary()["total"]["cache_hits"] == len(rows) > 100


def test_another_api_base_is_another_entry(mock_api, make_cfg):
    api = mock_api()
    first = api.client(make_cfg("on", api_base="http://127.0.0.1:8001/v1")).complete(REQ)
    other = api.client(make_cfg("on", api_base="http://127.0.0.1:8002/v1")).complete(REQ)
    again = api.client(make_cfg("on", api_base="http://127.0.0.1:8001/v1")).complete(REQ)
    assert not first.cached and not other.cached and other.text != first.text
    assert again.cached and again.text == first.text and api.calls == 2


def test_an_api_base_from_the_environment_is_part_of_the_key(mock_api, make_cfg, monkeypatch):
    api = mock_api()
    req = LMRequest(model="hosted_vllm/served-model", prompt="Capital of Kenya?")
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", "http://127.0.0.1:8001/v1")
    assert not api.client(make_cfg("on")).complete(req).cached
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", "http://127.0.0.1:8002/v1")
    assert not api.client(make_cfg("on")).complete(req).cached
    assert api.calls == 2


def test_a_stale_entry_of_another_api_base_is_not_served(mock_api, make_cfg, monkeypatch):
    """The cache holds an answer from a server that was up; the same request to a dead port
    goes to that port and fails (the issue: it was answered from the cache, silently)."""
    monkeypatch.setenv("SERVED_KEY", "sk-local")
    up = mock_api(lambda req, attempt: "Nairobi")
    assert up.client(make_cfg("on", api_base="http://127.0.0.1:8001/v1")).complete(REQ).text == "Nairobi"
    lm = LMClient(make_cfg("on", api_base=dead_base(), api_key_env="SERVED_KEY", max_retries=0))
    with pytest.raises(LMError, match="Connection"):
        lm.complete(REQ)
    total = lm.usage_summary()["total"]
    assert (total["cache_hits"], total["calls"], total["errors"]) == (0, 1, 1)
