"""LMClient: the LM every component calls. Routes, caches, accounts, enforces budgets."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from .base import LOCAL_PREFIX, BudgetExceeded, LMError, LMRequest, LMResponse, Usage
from .cache import ResponseCache
from .config import LMConfig

if TYPE_CHECKING:
    from .api import ApiEngine

log = logging.getLogger(__name__)


@dataclass
class LMUsage(Usage):
    """Counters of one component (or the total) in the client: real spend, and failed calls."""

    errors: int = 0

    def record(self, resp: LMResponse | None, *, cached: bool = False, latency_s: float = 0.0) -> None:
        if resp is None:  # the call failed
            self.calls += 1
            self.errors += 1
            self.latency_s += latency_s
            return
        self.add(resp, cached=cached, spent_only=True)

    def __sub__(self, other: LMUsage) -> LMUsage:
        return LMUsage(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_s"] = round(d["latency_s"], 6)
        d["cost_usd"] = round(d["cost_usd"], 8)
        return d


def _prompt_start(request: LMRequest, n: int = 80) -> str:
    text = request.prompt if request.prompt is not None else " | ".join(
        f"{r}: {c}" for r, c in request.messages or ()
    )
    return text[:n] + ("..." if len(text) > n else "")


UNTAGGED = "(untagged)"


class LMClient:
    """Implements the LM protocol for local (`local/...`) and API (litellm) models.

    `api` injects a preconfigured ApiEngine (tests: fake sleep, mock responses).
    """

    def __init__(self, cfg: LMConfig, *, api: ApiEngine | None = None) -> None:
        self.cfg = cfg
        self.cache = ResponseCache(cfg.cache)
        self._api = api
        self._lock = threading.Lock()
        self._total = LMUsage()
        self._by_component: dict[str, LMUsage] = {}
        self._inflight_calls = 0
        self._inflight_cost = 0.0

    # -- routing -----------------------------------------------------------
    @property
    def api(self) -> ApiEngine:
        if self._api is None:
            from .api import ApiEngine  # lazy: imports litellm

            with self._lock:
                if self._api is None:
                    self._api = ApiEngine(self.cfg)
        return self._api

    def _call(self, request: LMRequest) -> LMResponse:
        if request.model.startswith(LOCAL_PREFIX):
            from .local import complete_local

            return complete_local(request, self.cfg.local)
        if request.adapter is not None:
            raise LMError(f"model {request.model!r}: a LoRA adapter ({request.adapter}) can only be "
                          f"applied to an embedded local/... model")
        return self.api.complete(request)

    def _route(self, request: LMRequest) -> dict[str, Any] | None:
        """What besides the request decides an answer, for the cache key: an API model's
        server and endpoint (ApiEngine.route); None for an embedded model (its key is the
        request's alone, as recorded in bench/reproduce/)."""
        return None if request.model.startswith(LOCAL_PREFIX) else self.api.route(request)

    # -- protocol ----------------------------------------------------------
    def complete(self, request: LMRequest, *, component: str = "") -> LMResponse:
        """One generation, from the cache when allowed; raises LMError, or a RunStopped
        (BudgetExceeded, CacheUnreadable when the cache file breaks)."""
        mode = self.cache.mode
        route = self._route(request) if mode != "off" else None
        if mode in ("on", "replay"):
            hit, corrupt = self.cache.lookup(request, route)  # a corrupt entry is a miss
            if hit is not None:
                self._record(component, hit, cached=True)
                return hit
            if mode == "replay":
                what = (f"corrupt entry {request.key(route)[:16]}... in {self.cache.path} (fails "
                        f"its checksum; not served)" if corrupt else "cache miss")
                raise LMError(
                    f"{what} in replay mode (lm.cache.mode=replay): model {request.model!r}, "
                    f"prompt starts {_prompt_start(request)!r}"
                )
        reserved = self._reserve(request)
        t0 = time.perf_counter()
        try:
            resp = self._call(request)
        except BaseException:
            self._settle(component, reserved, None, time.perf_counter() - t0)
            raise
        self._settle(component, reserved, resp)
        if mode in ("on", "refresh"):
            try:
                self.cache.put(request, resp, route)
            except sqlite3.Error as exc:  # the answer is paid for: return it, just uncached
                log.warning("LM cache write failed (%s): %s", self.cache.path, exc)
        return resp

    # -- budgets and accounting ---------------------------------------------
    def _reserve(self, request: LMRequest) -> float:
        """Claim budget for one call (in-flight calls count) or raise BudgetExceeded."""
        cfg = self.cfg
        est = 0.0
        if cfg.max_cost_usd is not None and not request.model.startswith(LOCAL_PREFIX):
            est = self.api.estimate_max_cost(request)
        with self._lock:
            if cfg.max_calls is not None and self._total.calls + self._inflight_calls >= cfg.max_calls:
                raise BudgetExceeded(
                    f"lm.max_calls={cfg.max_calls} reached ({self._total.calls} calls made)"
                )
            if cfg.max_cost_usd is not None:
                committed = self._total.cost_usd + self._inflight_cost
                if committed >= cfg.max_cost_usd or committed + est > cfg.max_cost_usd:
                    raise BudgetExceeded(
                        f"lm.max_cost_usd={cfg.max_cost_usd} reached (spent "
                        f"${self._total.cost_usd:.6f}; next call may cost up to ${est:.6f})"
                    )
            self._inflight_calls += 1
            self._inflight_cost += est
        return est

    def _settle(
        self, component: str, reserved: float, resp: LMResponse | None, latency_s: float = 0.0
    ) -> None:
        with self._lock:
            self._inflight_calls -= 1
            self._inflight_cost -= reserved
            self._record_locked(component, resp, cached=False, latency_s=latency_s)

    def _record(self, component: str, resp: LMResponse, *, cached: bool) -> None:
        with self._lock:
            self._record_locked(component, resp, cached=cached)

    def _record_locked(
        self, component: str, resp: LMResponse | None, *, cached: bool, latency_s: float = 0.0
    ) -> None:
        comp = self._by_component.setdefault(component or UNTAGGED, LMUsage())
        for u in (self._total, comp):
            u.record(resp, cached=cached, latency_s=latency_s)

    def snapshot(self) -> LMUsage:
        """A copy of the total usage so far (subtract two snapshots for a delta)."""
        with self._lock:
            return LMUsage(**asdict(self._total))

    def usage_summary(self) -> dict[str, Any]:
        """JSON-serializable {"total": {...}, "by_component": {name: {...}}}, and
        "by_deployment": {model: {api_base: {...}}} where lm.deployments served calls."""
        with self._lock:
            summary = {
                "total": self._total.to_dict(),
                "by_component": {k: v.to_dict() for k, v in sorted(self._by_component.items())},
            }
        served = self._api.served() if self._api is not None else {}
        if served:  # lm.deployments: what each server answered
            summary["by_deployment"] = served
        return summary

    def close(self) -> None:
        """Close the cache connections (the shared model pools stay loaded)."""
        self.cache.close()
