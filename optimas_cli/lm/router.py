"""One model name served by several servers (`lm.deployments`), through litellm's Router.

    lm:
      model: openai/qwen
      deployments:
        openai/qwen:
          - {api_base: http://10.0.0.5:8080/v1, max_parallel: 1}
          - {api_base: http://10.0.0.6:8080/v1, max_parallel: 1}

litellm's Router does the balancing (least busy: the deployment with the fewest calls in
flight), the retries on another deployment, and the cooldown of one that fails; this module
does no routing of its own. What it adds:
- a per-deployment limit of calls in flight (`max_parallel`), enforced by litellm (its
  `max_parallel_requests`, on the Router's async path, which is why calls go through one
  event loop thread here), with the group's calls in flight held at the sum of the limits,
  so that the least busy deployment always has a free slot;
- a tally per deployment: calls, tokens and errors, as the responses report them.

A deployment is a replica: the cache key of a request is the model name's and the
request's (ApiEngine.route), not the server's, so an answer cached from one server is
served for the same request on another.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import defaultdict
from typing import Any

from .config import Deployment, LMConfig

_SLOT_WAIT_S = 0.05  # between tries for a slot of a busy deployment
_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def event_loop() -> asyncio.AbstractEventLoop:
    """The process's one loop thread for Router calls (started on first use, a daemon)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP.is_closed():
            _LOOP = asyncio.new_event_loop()
            threading.Thread(target=_LOOP.run_forever, name="optimas-lm-router",
                             daemon=True).start()
        return _LOOP


def slots_taken(exc: BaseException, litellm: Any) -> bool:
    """litellm's 429 for a deployment whose max_parallel calls are all in flight (not the
    provider's rate limit)."""
    return isinstance(exc, litellm.RateLimitError) and "max_parallel_requests" in str(exc)


def server_down(exc: BaseException, litellm: Any) -> bool:
    """A deployment that could not be reached or failed (not a refusal of the request)."""
    return isinstance(exc, (litellm.APIConnectionError, litellm.InternalServerError,
                            litellm.ServiceUnavailableError, litellm.Timeout))


def api_key(deployment: Deployment, cfg: LMConfig) -> str:
    """The deployment's key: its api_key_env, else lm.api_key_env; a self-hosted
    OpenAI-compatible server takes any (the openai client insists on one)."""
    env = deployment.api_key_env or cfg.api_key_env
    return (os.environ.get(env) if env else None) or "none"


class DeploymentGroup:
    """The Router of one model name's deployments, and what each of them served."""

    def __init__(self, name: str, deployments: list[Deployment], cfg: LMConfig,
                 litellm: Any) -> None:
        self.litellm = litellm  # the module, imported by the caller (lm/api.py)
        self.name = name
        self.bases = [d.api_base for d in deployments]
        model_list = []
        for d in deployments:
            params: dict[str, Any] = {"model": d.model or name, "api_base": d.api_base,
                                      "api_key": api_key(d, cfg), "timeout": cfg.timeout_s}
            if d.max_parallel is not None:
                params["max_parallel_requests"] = d.max_parallel
            model_list.append({"model_name": name, "litellm_params": params})
        # Every other deployment is tried before a call fails; a failing deployment cools
        # down after its first failure (allowed_fails=0: more than 0 fails), for as long as
        # a call may take.
        self.router = litellm.Router(
            model_list=model_list, routing_strategy="least-busy",
            num_retries=len(deployments), retry_after=0, allowed_fails=0,
            cooldown_time=cfg.timeout_s)
        limits = [d.max_parallel for d in deployments]
        capacity = sum(limits) if None not in limits else cfg.max_concurrency
        self.slots = threading.BoundedSemaphore(capacity)
        self.wait_s = cfg.timeout_s  # for a slot, at most as long as a call may take
        self._lock = threading.Lock()
        self._served: dict[str, dict[str, int]] = defaultdict(
            lambda: {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})

    def call(self, kwargs: dict[str, Any], chat: bool) -> Any:
        """One litellm call through the Router, from any thread. It waits for a free slot:
        while a deployment is down, the others' slots are all there is, and litellm answers a
        call that finds every slot of its pick taken with a 429 rather than a wait.
        A call whose server failed is tried again, up to once per deployment: the Router's own
        retries can all land on the failed server before its cooldown is recorded."""
        router = self.router
        coroutine = router.acompletion if chat else router.atext_completion
        deadline = time.monotonic() + self.wait_s
        failed = 0
        with self.slots:
            while True:
                future = asyncio.run_coroutine_threadsafe(coroutine(**kwargs), event_loop())
                try:
                    resp = future.result()
                    break
                except Exception as e:
                    if server_down(e, self.litellm) and failed < len(self.bases):
                        failed += 1
                        continue
                    if not slots_taken(e, self.litellm) or time.monotonic() > deadline:
                        raise
                time.sleep(_SLOT_WAIT_S)
        self._tally(resp)
        return resp

    def _tally(self, resp: Any) -> None:
        base = str((getattr(resp, "_hidden_params", None) or {}).get("api_base") or "?")
        usage = getattr(resp, "usage", None)
        with self._lock:
            row = self._served[base]
            row["calls"] += 1
            row["prompt_tokens"] += int(getattr(usage, "prompt_tokens", 0) or 0)
            row["completion_tokens"] += int(getattr(usage, "completion_tokens", 0) or 0)

    def served(self) -> dict[str, dict[str, int]]:
        """api_base -> calls and tokens its answers reported (what reached each server)."""
        with self._lock:
            return {base: dict(row) for base, row in sorted(self._served.items())}


_GROUPS: dict[tuple, DeploymentGroup] = {}
_GROUPS_LOCK = threading.Lock()


def group(name: str, cfg: LMConfig, litellm: Any) -> DeploymentGroup:
    """The process's group of `name`'s deployments under `cfg` (one Router per config, so
    that every client of a run shares its per-deployment limits)."""
    deployments = cfg.deployments[name]
    key = (name, tuple(d.model_dump_json() for d in deployments), cfg.timeout_s,
           cfg.max_concurrency, cfg.api_key_env)
    with _GROUPS_LOCK:
        if key not in _GROUPS:
            _GROUPS[key] = DeploymentGroup(name, deployments, cfg, litellm)
        return _GROUPS[key]
