"""LM-layer fixtures: configs pointing at a per-test cache, and a mock-backed API client."""

from __future__ import annotations

import itertools
import threading

import pytest

from optimas_cli.lm import LMClient, LMConfig


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(mode="on", **lm_fields) -> LMConfig with its cache under tmp_path/cache."""

    def _make(mode: str = "on", **kw) -> LMConfig:
        return LMConfig(cache={"mode": mode, "dir": str(tmp_path / "cache")}, **kw)

    return _make


class MockApi:
    """Builds an ApiEngine whose litellm calls get `mock_response=` (real litellm, no network).

    `script(request, attempt)` returns the mock_response value (text or exception),
    or a dict of litellm kwargs; the default answers with a fresh numbered text.
    """

    def __init__(self, script=None):
        self.counter = itertools.count(1)
        self.script = script or (lambda req, attempt: f"answer {next(self.counter)}")
        self.calls = 0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def kwargs(self, request, attempt):
        with self._lock:
            self.calls += 1
        out = self.script(request, attempt)
        return out if isinstance(out, dict) else {"mock_response": out}

    def engine(self, cfg: LMConfig):
        from optimas_cli.lm.api import ApiEngine

        return ApiEngine(cfg, sleep=self.sleeps.append, extra_kwargs=self.kwargs)

    def client(self, cfg: LMConfig) -> LMClient:
        return LMClient(cfg, api=self.engine(cfg))


@pytest.fixture
def mock_api():
    return MockApi
