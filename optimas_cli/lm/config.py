"""Typed schema of the `lm:` config group (configs/lm/*.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CacheConfig(_Strict):
    # on: read and write; off: neither; replay: a miss is an error (CI reproduction);
    # refresh: always call, overwrite the entry.
    mode: Literal["on", "off", "replay", "refresh"] = Field(
        "on", description="on: read and write; off: neither; replay: a miss is an error (CI); "
                          "refresh: always call, overwrite")
    dir: str | None = Field(None, description="cache directory (null: the user cache dir / "
                                              "optimas / lm)")


class LocalEngineConfig(_Strict):
    n_ctx: int = Field(2048, gt=0, description="context window of an embedded model, in tokens")
    n_threads: int | None = Field(None, description="threads per instance (null: all cores split "
                                                    "across instances)")
    # Parallel model instances serving concurrent callers (why 2: BENCHMARKS.md, "Why the
    # defaults are what they are").
    instances: int = Field(2, ge=1, description="parallel model instances serving concurrent "
                                                "callers")
    # Prompt tokens per llama.cpp batch, also the unit of prefix reuse (why 64: BENCHMARKS.md,
    # "Why the defaults are what they are").
    n_batch: int = Field(64, ge=8, description="prompt tokens per llama.cpp batch, also the unit "
                                               "of prefix reuse")
    # Keep the part of an instance's previous prompt that the next one shares, in whole
    # batches: fewer tokens evaluated, the same logits bit for bit (lm/prefix.py).
    prefix_reuse: bool = Field(True, description="reuse the prompt prefix an instance already "
                                                 "evaluated (same logits, fewer tokens)")


class Deployment(_Strict):
    """One server or API deployment that serves a model name (a replica: same model, same
    answers; lm/router.py)."""

    api_base: str = Field(description="the server's URL, e.g. http://10.0.0.5:8000/v1")
    model: str | None = Field(None, description="the litellm model name this server is called "
                                                "with (null: the name the deployments serve)")
    api_key_env: str | None = Field(None, description="the environment variable holding this "
                                                      "server's key (null: lm.api_key_env)")
    max_parallel: int | None = Field(None, ge=1, description="calls in flight to this server at "
                                                             "most (a llama.cpp server: 1)")


class LMConfig(_Strict):
    model: str = Field("local/smollm2-135m-instruct",
                       description="LM name: local/<embedded model>, or a litellm provider/model")
    # LM names a `model` variable may choose among (systems refer to it as ${lm.choices}).
    choices: list[str] = Field(default_factory=list,
                               description="LM names a model variable may choose among "
                                           "(${lm.choices} in systems)")
    temperature: float = Field(0.0, ge=0.0, description="sampling temperature (0: greedy, reruns "
                                                        "identical and cached)")
    max_tokens: int = Field(64, gt=0, description="tokens per completion at most")
    api_base: str | None = Field(None, description="server URL of an API model (null: the "
                                                   "provider's)")
    api_key_env: str | None = Field(None, description="the environment variable that holds the "
                                                      "key (null: the provider's usual one)")
    deployments: dict[str, list[Deployment]] = Field(
        default_factory=dict, description="model name -> the servers that serve it, balanced, "
        "retried and failed over by litellm's Router; a deployment is a replica: the cache key "
        "is the model's and the request's, not the server's")
    # How llm components prompt (lm/style.py); a component's params.style overrides it.
    prompt_style: Literal["auto", "chat", "completion"] = Field(
        "auto", description="prompt form of llm components: auto (completion documents for "
                            "local/ models, chat for API models), chat or completion; a "
                            "component's params.style overrides it")
    timeout_s: float = Field(60.0, gt=0, description="seconds per API call before it is retried")
    max_retries: int = Field(4, ge=0, description="retries of a failed API call")
    retry_base_delay_s: float = Field(1.0, ge=0, description="first retry delay; doubled each "
                                                             "retry")
    max_concurrency: int = Field(8, ge=1, description="concurrent API calls per provider")
    max_calls: int | None = Field(None, ge=1, description="budget: model calls (cache hits are "
                                                          "free; null: no cap)")
    max_cost_usd: float | None = Field(None, gt=0, description="budget: dollars of API calls; the "
                                                               "run stops cleanly when spent")
    cache: CacheConfig = Field(CacheConfig(), description="the LM response cache")
    local: LocalEngineConfig = Field(LocalEngineConfig(), description="the embedded llama.cpp "
                                                                      "engine")

    @field_validator("deployments")
    @classmethod
    def _deployments(cls, value: dict[str, list[Deployment]]) -> dict[str, list[Deployment]]:
        for name, servers in value.items():
            if name.startswith("local/"):
                raise ValueError(f"{name}: an embedded model runs in process; deployments are "
                                 "servers of an API model name (e.g. openai/qwen)")
            if not servers:
                raise ValueError(f"{name}: give at least one deployment (api_base: ...)")
        return value
