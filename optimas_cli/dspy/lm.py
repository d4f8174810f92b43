"""OptimasLM: a dspy.BaseLM whose every call is an LMRequest to our LM.

DSPy calls thereby share our response cache, usage accounting (tagged
``dspy/<component>``, ``dspy/proposer``, ...) and budgets (lm.max_calls,
lm.max_cost_usd). DSPy's own cache is off for it (a legacy BaseLM never uses it), so
there is exactly one cache. A predictor's call takes its defaults (model, sampling,
stop, completion style) from `request_defaults`, set by the component it runs for.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import uuid
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dspy

from optimas_cli.graph import System
from optimas_cli.lm.base import LM, LMRequest, LMResponse, RunStopped

warnings.filterwarnings(
    "ignore", message=r"Implementing custom LMs through BaseLM\.forward", category=DeprecationWarning)

# Request defaults of the component whose predictor is running (see request_defaults).
_REQUEST: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "optimas_dspy_request", default=None)


class _AttrDict(dict):
    """An OpenAI-style response: readable by key (DSPy's `value()`) and by attribute."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class _Shared:
    """State every copy of one OptimasLM shares (DSPy copies LMs freely)."""

    budget_error: RunStopped | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self


def _text(content: Any) -> str:
    """Message content as text (DSPy may send a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict) and p.get("type") == "text":
                parts.append(str(p.get("text", "")))
            elif isinstance(p, str):
                parts.append(p)
            else:
                raise ValueError(f"OptimasLM handles text messages only, got a {p.get('type')!r} part"
                                 if isinstance(p, dict) else f"unsupported message part {p!r}")
        return "".join(parts)
    return str(content)


def sample_index_of(rollout_id: Any, i: int) -> int:
    """A distinct sample_index per (rollout_id, sample): DSPy's cache-busting as distinct requests."""
    if rollout_id is None:
        return i
    base = rollout_id if isinstance(rollout_id, int) and rollout_id >= 0 else zlib.crc32(
        str(rollout_id).encode("utf-8"))
    return (base + 1) * 1000 + i


class OptimasLM(dspy.BaseLM):
    """A dspy.BaseLM calling our LM (see module doc).

    Args:
        lm: our LM (an LMClient; anything with `complete(request, component=)`).
        model: default model name (`local/...` or a litellm name).
        component: accounting tag of calls made outside any component (e.g. the
            proposer's); calls made by a component's predictor are tagged
            ``dspy/<component>``.
        temperature, max_tokens: defaults; None defers to the running
            component's settings, then to `fallback_*`.
    """

    def __init__(self, lm: LM, model: str, *, component: str = "dspy", temperature: float | None = None,
                 max_tokens: int | None = None, seed: int = 0, fallback_temperature: float = 0.0,
                 fallback_max_tokens: int = 256, **kwargs: Any):
        super().__init__(model=model, model_type="chat", temperature=temperature,
                         max_tokens=max_tokens, cache=False, num_retries=0, **kwargs)
        self.client = lm
        self.component = component
        self.seed = seed
        self.fallback_temperature = fallback_temperature
        self.fallback_max_tokens = fallback_max_tokens
        self._shared = _Shared()

    # DSPy deep-copies programs and settings; the client (locks, sqlite) is shared, never copied.
    def __deepcopy__(self, memo: dict) -> OptimasLM:
        return self.copy()

    def dump_state(self) -> dict[str, Any]:
        return {"model": self.model, "component": self.component,
                **{k: v for k, v in self.kwargs.items() if isinstance(v, (str, int, float, bool))}}

    @property
    def budget_error(self) -> RunStopped | None:
        """The first RunStopped (a spent budget, a rejected key) any copy hit: DSPy swallows
        exceptions as failed examples, so the stop is remembered and re-raised after it."""
        return self._shared.budget_error

    def raise_if_over_budget(self) -> None:
        if self._shared.budget_error is not None:
            raise self._shared.budget_error

    def requests(self, prompt: str | None = None, messages: list[dict] | None = None,
                 **kwargs: Any) -> list[LMRequest]:
        """The LMRequests one DSPy call maps to (one per distinct sample)."""
        merged = {**self.kwargs, **kwargs}
        ctx = _REQUEST.get() or {}
        if messages is None:
            messages = [{"role": "user", "content": prompt or ""}]
        msgs = tuple((str(m.get("role", "user")), _text(m.get("content"))) for m in messages)
        temperature = merged.get("temperature")
        if temperature is None:
            temperature = ctx.get("temperature", self.fallback_temperature)
        temperature = float(temperature)
        max_tokens = (merged.get("max_tokens") or merged.get("max_completion_tokens")
                      or ctx.get("max_tokens") or self.fallback_max_tokens)
        stop = merged.get("stop")
        stop = ctx.get("stop", ()) if stop is None else stop
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        n = int(merged.get("n") or 1)
        rollout_id = merged.get("rollout_id")
        completion = merged.get("optimas_completion")
        if completion is None:
            completion = ctx.get("completion")
        common: dict[str, Any] = {"model": ctx.get("model") or self.model, "temperature": temperature,
                                  "max_tokens": int(max_tokens), "stop": stop,
                                  "seed": int(ctx.get("seed", self.seed))}
        if completion and len(msgs) == 1 and msgs[0][0] == "user":
            common["prompt"] = msgs[0][1]  # the component's completion-style document
        else:
            common["messages"] = msgs
        first = int(ctx.get("sample_index", 0))
        if temperature == 0:  # greedy: every sample is the same request
            return [LMRequest(**common, sample_index=first)] * n
        if rollout_id is None:
            return [LMRequest(**common, sample_index=first + i) for i in range(n)]
        return [LMRequest(**common, sample_index=sample_index_of(rollout_id, i)) for i in range(n)]

    def forward(self, prompt: str | None = None, messages: list[dict] | None = None,
                **kwargs: Any) -> _AttrDict:
        ctx = _REQUEST.get() or {}
        tag = ctx.get("component") or self.component
        done: dict[LMRequest, LMResponse] = {}
        responses = []
        requests = self.requests(prompt, messages, **kwargs)
        for req in requests:
            if req not in done:
                try:
                    done[req] = self.client.complete(req, component=tag)
                except RunStopped as e:
                    with self._shared.lock:
                        self._shared.budget_error = self._shared.budget_error or e
                    raise
            responses.append(done[req])
        distinct = list(done.values())
        choices = [{"index": i, "finish_reason": r.extra.get("finish_reason") or "stop",
                    "message": _AttrDict(role="assistant", content=r.text)}
                   for i, r in enumerate(responses)]
        pt = sum(r.prompt_tokens for r in distinct)
        ct = sum(r.completion_tokens for r in distinct)
        return _AttrDict(id=f"optimas-{uuid.uuid4().hex[:12]}", object="chat.completion",
                         created=int(time.time()), model=requests[0].model,
                         choices=[_AttrDict(c) for c in choices],
                         usage={"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
                         cache_hit=all(r.cached for r in distinct))

    async def aforward(self, prompt: str | None = None, messages: list[dict] | None = None,
                       **kwargs: Any) -> _AttrDict:
        return await asyncio.to_thread(self.forward, prompt, messages, **kwargs)


@contextmanager
def request_defaults(**values: Any) -> Iterator[None]:
    """Within the block, OptimasLM calls default to these request settings (model, temperature,
    max_tokens, stop, seed, sample_index, completion, component: the accounting tag)."""
    token = _REQUEST.set(values)
    try:
        yield
    finally:
        _REQUEST.reset(token)


def task_lm(system: System, lm_config: Any, *, seed: int = 0) -> OptimasLM:
    """The OptimasLM that runs the system's predictors (component settings decide each call)."""
    return OptimasLM(system.lm, lm_config.model, component="dspy/task", seed=seed,
                     fallback_temperature=lm_config.temperature,
                     fallback_max_tokens=lm_config.max_tokens)


def helper_lm(lm: LM, model: str, *, component: str, temperature: float | None = None,
              max_tokens: int = 256, seed: int = 0) -> OptimasLM:
    """An OptimasLM for DSPy's own meta-prompts (instruction proposer, GEPA reflection)."""
    return OptimasLM(lm, model, component=component, temperature=temperature, max_tokens=max_tokens,
                     seed=seed, fallback_temperature=1.0 if temperature is None else temperature,
                     fallback_max_tokens=max_tokens)
