"""A scripted LM for logic tests (importable as `from lmfake import ScriptedLM`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from optimas_cli.lm.base import LMRequest, LMResponse


class ScriptedLM:
    """Answers every request with `script(request)`; records what it was asked."""

    def __init__(self, script: Callable[[LMRequest], str] | None = None):
        self.script = script or (lambda r: "scripted")
        self.requests: list[tuple[str, LMRequest]] = []
        self._lock = threading.Lock()

    def complete(self, request: LMRequest, *, component: str = "") -> LMResponse:
        with self._lock:
            self.requests.append((component, request))
        text = self.script(request)
        return LMResponse(text=text, prompt_tokens=len((request.prompt or "").split()),
                          completion_tokens=len(text.split()), latency_s=0.001)

    def usage_summary(self) -> dict:
        return {"total": {"calls": len(self.requests)}}
