"""API models through litellm: retries, timeouts, per-provider concurrency, cost.

Every model name without the `local/` prefix lands here (`openai/...`,
`anthropic/...`, `ollama/...`, `hosted_vllm/...`). litellm is imported lazily
because importing it takes seconds and local-only runs never need it.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .base import LOCAL_PREFIX, CredentialsRejected, LMError, LMRequest, LMResponse
from .config import LMConfig

# provider prefix -> env var holding its key; providers absent here fall back to
# litellm.validate_environment.
KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "cohere": "COHERE_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "xai": "XAI_API_KEY",
}
# Self-hosted servers: no key needed.
NO_KEY = {"ollama", "ollama_chat", "hosted_vllm", "lm_studio", "llamafile"}
MAX_BACKOFF_S = 60.0

ExtraKwargs = Callable[[LMRequest, int], dict[str, Any]]


class MissingCredentials(LMError):
    """An API model's key (environment variable) is not set."""


class UnknownModel(LMError):
    """A model name that names no model: a local/ name not embedded, or a name whose
    provider litellm cannot tell."""


def litellm_module() -> Any:
    """Import litellm offline-safely (its cost map download would hang without network)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def provider_of(model: str) -> str:
    """Provider prefix of a litellm model name ('openai/gpt-4o' -> 'openai')."""
    if "/" in model:
        return model.split("/", 1)[0]
    try:  # bare names like 'gpt-4o-mini': ask litellm
        return litellm_module().get_llm_provider(model=model)[1]
    except Exception:
        return "unknown"


def unknown_model(model: str) -> str | None:
    """Why `model` names no model, or None when it may: a `local/` name must be an embedded
    model; any other name needs a provider litellm knows (`openai/...`, `ollama/...`, or a
    bare name litellm maps to one, such as `gpt-4o-mini`). A provider's model list is not
    checked: litellm's copy lags the providers'."""
    from difflib import get_close_matches

    from .local import LOCAL_MODELS

    if model.startswith(LOCAL_PREFIX):
        if model.removeprefix(LOCAL_PREFIX) in LOCAL_MODELS:
            return None
        known = [LOCAL_PREFIX + n for n in sorted(LOCAL_MODELS)]
        near = get_close_matches(model, known, n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        return f"no embedded model of that name ({hint}the local/ models: {', '.join(known)})"
    example = "write provider/model, e.g. openai/gpt-4o-mini or ollama/llama3.2:1b"
    if "/" in model:
        prefix = model.split("/", 1)[0]
        if prefix in KEY_ENV or prefix in NO_KEY or prefix in litellm_module().provider_list:
            return None
        return f"litellm knows no provider {prefix!r} ({example})"
    if provider_of(model) == "unknown":
        return f"litellm cannot tell its provider ({example})"
    return None


def check_credentials(model_names: Iterable[str], cfg: LMConfig) -> None:
    """Before a run: raise UnknownModel for a name that names no model (unknown_model),
    else MissingCredentials naming the env var of every API model lacking a key, so
    nothing fails mid-run."""
    names = list(dict.fromkeys(model_names))  # dedupe, keep order
    unknown = [f"unknown model {m!r}: {why}" for m in names if (why := unknown_model(m))]
    if unknown:
        raise UnknownModel("; ".join(unknown))
    problems: list[str] = []
    for model in names:
        if model.startswith(LOCAL_PREFIX):
            continue
        provider = provider_of(model)
        if cfg.api_key_env:
            needed = [cfg.api_key_env]
        elif provider in NO_KEY:
            needed = []
        elif provider in KEY_ENV:
            needed = [KEY_ENV[provider]]
        else:
            try:
                env = litellm_module().validate_environment(model=model, api_base=cfg.api_base)
                needed = list(env.get("missing_keys") or [])
            except Exception:
                needed = []
        missing = [v for v in needed if not os.environ.get(v)]
        if missing:
            problems.append(f"model {model!r} needs environment variable {', '.join(missing)}")
        if provider == "hosted_vllm" and not (cfg.api_base or model in cfg.deployments
                                              or os.environ.get("HOSTED_VLLM_API_BASE")):
            problems.append(f"model {model!r} needs lm.api_base (or HOSTED_VLLM_API_BASE)")
    if problems:
        raise MissingCredentials("LM configuration problem: " + "; ".join(problems))


# One limit per (provider, size), shared by every client in the process: the
# provider's rate limit is per process/key, not per client object.
_SEMAPHORES: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_SEMAPHORES_LOCK = threading.Lock()


def _provider_semaphore(provider: str, limit: int) -> threading.BoundedSemaphore:
    with _SEMAPHORES_LOCK:
        sem = _SEMAPHORES.get((provider, limit))
        if sem is None:
            sem = _SEMAPHORES[(provider, limit)] = threading.BoundedSemaphore(limit)
        return sem


def _rejects_key(exc: BaseException) -> bool:
    """The provider refused the key (401: revoked, expired), or it is gone from the
    environment: no later call of the run can succeed either."""
    # litellm reports a missing key as a 500 from the openai client
    return isinstance(exc, litellm_module().AuthenticationError) or (
        "missing credentials" in str(exc).lower())


def _is_retryable(exc: BaseException) -> bool:
    """Transient failures (rate limit, timeout, connection, 5xx) are retried; the rest are not."""
    litellm = litellm_module()
    permanent = (
        litellm.AuthenticationError,
        litellm.BadRequestError,  # incl. context window / content policy
        litellm.NotFoundError,
        litellm.PermissionDeniedError,
        litellm.UnprocessableEntityError,
    )
    if isinstance(exc, permanent) or _rejects_key(exc):
        return False
    transient = (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
    )
    if isinstance(exc, transient):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in (408, 429) or status >= 500)


def _retry_after_s(exc: BaseException) -> float:
    """The server's Retry-After hint in seconds, 0 if none."""
    try:
        return float(exc.response.headers.get("retry-after", 0))  # type: ignore[attr-defined]
    except Exception:
        return 0.0


def _describe(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {msg}"


def parse_response(model: str, resp: Any) -> tuple[str, int, int]:
    """(text, prompt_tokens, completion_tokens) of a litellm response.

    LMError (not retried: the same request would get the same) for a malformed response,
    a content-filter refusal (finish_reason content_filter: whatever text came is cut),
    and an empty reply (no text: an answer scored as if the model had spoken would hide it).
    """
    choices = getattr(resp, "choices", None)
    if not choices:
        raise LMError(f"{model}: malformed response (no choices): {str(resp)[:200]}")
    message = getattr(choices[0], "message", None)  # chat; a text completion has .text
    text = getattr(message, "content", None) if message is not None else getattr(
        choices[0], "text", None)
    reason = getattr(choices[0], "finish_reason", None)
    if reason == "content_filter":
        raise LMError(f"{model}: refused by the provider's content filter "
                      f"(finish_reason=content_filter)")
    if not isinstance(text, str):
        raise LMError(f"{model}: malformed response (no text content, finish_reason={reason})")
    if not text.strip():
        raise LMError(f"{model}: empty reply (finish_reason={reason})")
    usage = getattr(resp, "usage", None)
    pt = int(getattr(usage, "prompt_tokens", 0) or 0)
    ct = int(getattr(usage, "completion_tokens", 0) or 0)
    return text, pt, ct


class ApiEngine:
    """Calls litellm.completion with bounded retries; one per LMClient.

    `sleep` is injectable so tests of the backoff run instantly; `extra_kwargs`
    (request, attempt) -> kwargs is merged into each litellm.completion call,
    e.g. {"mock_response": ...} for offline tests.
    """

    def __init__(
        self,
        cfg: LMConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        extra_kwargs: ExtraKwargs | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.sleep = sleep
        self.extra_kwargs = extra_kwargs
        self.rng = rng or random.Random()
        self.delays: list[float] = []  # backoff delays slept, for tests and logs
        self._groups: dict[str, Any] = {}  # model name -> its DeploymentGroup, once used

    def _group(self, model: str) -> Any:
        """The DeploymentGroup serving `model` (lm.deployments), or None."""
        if model not in self.cfg.deployments:
            return None
        if model not in self._groups:
            from .router import group

            self._groups[model] = group(model, self.cfg, litellm_module())
        return self._groups[model]

    def served(self) -> dict[str, dict[str, dict[str, int]]]:
        """model -> api_base -> calls and tokens, for the models served by deployments."""
        return {model: g.served() for model, g in sorted(self._groups.items())}

    def backoff_s(self, attempt: int, exc: BaseException) -> float:
        """Exponential backoff with jitter (x0.5..1.5), at least the server's Retry-After."""
        base = min(MAX_BACKOFF_S, self.cfg.retry_base_delay_s * 2**attempt)
        return max(base * self.rng.uniform(0.5, 1.5), _retry_after_s(exc))

    def api_base(self, model: str) -> str | None:
        """The server a call of `model` goes to: lm.api_base, else the one litellm takes from
        the environment (HOSTED_VLLM_API_BASE, OPENAI_BASE_URL, ...); None: the provider's."""
        if self.cfg.api_base:
            return self.cfg.api_base
        provider = provider_of(model)
        try:
            found = litellm_module().get_llm_provider(model=model)[3]
        except Exception:  # an unknown provider: the call itself will say so
            found = None
        env = provider.upper().replace("-", "_")
        return found or os.environ.get(f"{env}_BASE_URL") or os.environ.get(f"{env}_API_BASE")

    def route(self, request: LMRequest) -> dict[str, Any]:
        """Where and how `request` is sent, as far as that can change the answer: part of
        its cache key (LMClient), so one server's answers are never served for another's.
        A model served by lm.deployments is keyed by its name: its servers are replicas."""
        endpoint = "chat" if request.is_chat else "text_completion"
        if request.model in self.cfg.deployments:
            return {"deployments": request.model, "endpoint": endpoint}
        return {"api_base": self.api_base(request.model), "endpoint": endpoint}

    def _kwargs(self, request: LMRequest, attempt: int) -> dict[str, Any]:
        # A chat request goes to the chat endpoint; a completion document to the completions
        # endpoint (litellm.text_completion; a provider without one gets it as one user turn).
        form = {"messages": request.chat_messages()} if request.is_chat else {
            "prompt": request.prompt}
        kw: dict[str, Any] = {
            "model": request.model,
            **form,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "timeout": self.cfg.timeout_s,
            "num_retries": 0,  # we retry ourselves; don't stack litellm/openai retries
            "max_retries": 0,
            "drop_params": True,  # e.g. seed where a provider lacks it
        }
        if request.stop:
            kw["stop"] = list(request.stop)
        if request.temperature > 0:
            kw["seed"] = request.seed * 1000003 + request.sample_index
        if request.model in self.cfg.deployments:  # the Router gives each its server and key,
            del kw["num_retries"]  # and tries the other deployments before a call fails
        else:
            if self.cfg.api_base:
                kw["api_base"] = self.cfg.api_base
            if self.cfg.api_key_env:
                kw["api_key"] = os.environ.get(self.cfg.api_key_env)
        if self.extra_kwargs is not None:
            kw.update(self.extra_kwargs(request, attempt))
        return kw

    def complete(self, request: LMRequest) -> LMResponse:
        """One generation; LMError after max_retries transient failures (429, timeouts,
        connection errors, 5xx) or any permanent one; CredentialsRejected if the key is refused."""
        litellm = litellm_module()
        sem = _provider_semaphore(provider_of(request.model), self.cfg.max_concurrency)
        group = self._group(request.model)
        attempt = 0
        while True:
            t0 = time.perf_counter()
            try:
                if group is not None:  # its own limits: per deployment, and their sum
                    resp = group.call(self._kwargs(request, attempt), request.is_chat)
                else:
                    with sem:
                        call = litellm.completion if request.is_chat else litellm.text_completion
                        resp = call(**self._kwargs(request, attempt))
            except Exception as exc:
                if _rejects_key(exc):
                    raise CredentialsRejected(
                        f"{request.model}: the provider rejected the API key ({_describe(exc)}); "
                        "every later call would fail too, so the run stops here") from exc
                if not _is_retryable(exc):
                    raise LMError(f"{request.model}: {_describe(exc)}") from exc
                if attempt >= self.cfg.max_retries:
                    raise LMError(
                        f"{request.model}: gave up after {attempt + 1} attempts: {_describe(exc)}"
                    ) from exc
                delay = self.backoff_s(attempt, exc)
                self.delays.append(delay)
                self.sleep(delay)  # outside the semaphore: waiting must not hold a slot
                attempt += 1
                continue
            latency = time.perf_counter() - t0
            text, pt, ct = parse_response(request.model, resp)
            return LMResponse(
                text=text,
                prompt_tokens=pt,
                completion_tokens=ct,
                latency_s=latency,
                cost_usd=self._cost(resp),
                extra={"attempts": attempt + 1},
            )

    @staticmethod
    def _cost(resp: Any) -> float:
        try:
            return float(litellm_module().completion_cost(completion_response=resp) or 0.0)
        except Exception:  # model missing from the cost map: unknown price counts as 0
            return 0.0

    def estimate_max_cost(self, request: LMRequest) -> float:
        """Worst-case dollars of a call (prompt + max_tokens of output); 0 if unpriced."""
        texts = [c for _, c in request.messages] if request.messages else [request.prompt or ""]
        # chars/3 over-counts English tokens (~4 chars each): a safe bound, and unlike a
        # real tokenizer it never needs to fetch anything.
        n_prompt = sum(len(t) for t in texts) // 3 + 4 * len(texts) + 8
        try:
            p, c = litellm_module().cost_per_token(
                model=request.model, prompt_tokens=n_prompt, completion_tokens=request.max_tokens
            )
            return float(p + c)
        except Exception:
            return 0.0
