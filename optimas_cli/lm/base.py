"""The one LM interface every component and optimizer talks to.

A request is plain data with a content hash, so it can be cached, replayed and
logged; a response carries the accounting a run needs (tokens, latency, cost).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

LOCAL_PREFIX = "local/"


def file_digest(path: str) -> str:
    """sha256 of a file's bytes (cached by path, size and mtime)."""
    st = os.stat(path)
    return _digest(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True)
class LMRequest:
    """One generation request.

    Exactly one of `prompt` (plain completion) or `messages` (chat) is set.
    `sample_index` makes the n-th sample at temperature > 0 a distinct request,
    so n samples are n cache entries rather than one stale answer.
    """

    model: str
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # ((role, content), ...)
    temperature: float = 0.0
    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int = 0
    sample_index: int = 0
    # a LoRA adapter applied to a local model: the path of its llama.cpp GGUF (a `weights`
    # variable's value, optimas_cli/weights/); None: the base weights
    adapter: str | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("LMRequest needs exactly one of prompt= or messages=")

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    def chat_messages(self) -> list[dict[str, str]]:
        """Messages in the OpenAI/litellm wire format."""
        return [{"role": r, "content": c} for r, c in (self.messages or ())]

    def canonical(self, route: dict[str, Any] | None = None) -> dict[str, Any]:
        """The request as plain data; `route`: where and how it is sent, when that can change
        the answer (an API model's server and endpoint; None for the embedded models, whose
        keys stay what they always were)."""
        d = asdict(self)
        if route:
            d["route"] = dict(route)
        d["stop"] = list(self.stop)
        d["messages"] = [list(m) for m in self.messages] if self.messages else None
        if self.adapter is None:
            del d["adapter"]  # requests without one keep the keys they always had
        else:  # the adapter's content, not its path, decides the answer
            d["adapter"] = file_digest(self.adapter)
        return d

    def key(self, route: dict[str, Any] | None = None) -> str:
        """sha256 of the canonical JSON of the whole request and its route (cache key)."""
        blob = json.dumps(self.canonical(route), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class LMResponse:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Usage:
    """LM counters: `calls` are real model calls, `cache_hits` answers from the cache."""

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0

    def add(self, r: LMResponse, *, cached: bool | None = None, spent_only: bool = False) -> None:
        """Count one response. A component step counts what it consumed, a cache hit's
        tokens included; the client's accounting (`spent_only`) counts only what a real
        call cost, so a hit adds nothing but itself."""
        if r.cached if cached is None else cached:
            self.cache_hits += 1
            if spent_only:
                return
        else:
            self.calls += 1
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.latency_s += r.latency_s
        self.cost_usd += r.cost_usd


class LM(Protocol):
    """What components call. `component` attributes usage in the accounting."""

    def complete(self, request: LMRequest, *, component: str = "") -> LMResponse: ...


class LMError(RuntimeError):
    """A model call failed for good (after any retries); the message says why."""


class RunStopped(RuntimeError):
    """The run cannot go on, but nothing it did is wrong: it ends with STOPPED (the message
    says why), everything computed so far stays in the run directory, and `resume=` goes on
    from there once the cause is fixed. Evaluations and collections let it through instead
    of recording it as an example's failure."""


class BudgetExceeded(RunStopped):
    """A run's LM budget (max_calls or max_cost_usd) ran out; the message names it."""


class CacheUnreadable(RunStopped):
    """The LM response cache file cannot be read (damaged, not a database, an I/O error);
    the message names the file and how to rebuild it. A run stops rather than failing its
    examples one by one on the same broken file."""


class CredentialsRejected(RunStopped):
    """The provider refused the API key (revoked, expired, or gone from the environment)
    after the run had started: every further call would fail the same way."""
