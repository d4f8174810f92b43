"""Typed schema of the `lm:` config group (configs/lm/*.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CacheConfig(_Strict):
    # on: read and write; off: neither; replay: a miss is an error (CI reproduction);
    # refresh: always call, overwrite the entry.
    mode: Literal["on", "off", "replay", "refresh"] = "on"
    dir: str | None = None  # default: the user cache dir (platformdirs) / optimas / lm


class LocalEngineConfig(_Strict):
    n_ctx: int = Field(2048, gt=0)
    n_threads: int | None = None  # None: all cores split across instances
    # Parallel model instances serving concurrent callers. 2 (x 1 thread on 2 cores):
    # measured best under concurrent callers, and 1-thread contexts keep their speed
    # when the CPU is oversubscribed, where 2-thread ones collapse (bench/lm_throughput.py).
    instances: int = Field(2, ge=1)
    # Prompt tokens per llama.cpp batch, also the unit of prefix reuse. 64 evaluated prompts
    # as fast as 512 on 2 cores (BENCHMARKS.md, "Prefix reuse").
    n_batch: int = Field(64, ge=8)
    # Keep the part of an instance's previous prompt that the next one shares, in whole
    # batches: fewer tokens evaluated, the same logits bit for bit (lm/prefix.py).
    prefix_reuse: bool = True


class LMConfig(_Strict):
    model: str = "local/smollm2-135m-instruct"
    # LM names a `model` variable may choose among (systems refer to it as ${lm.choices}).
    choices: list[str] = Field(default_factory=list)
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(64, gt=0)
    api_base: str | None = None
    api_key_env: str | None = None  # override the env var that holds the key
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)
    retry_base_delay_s: float = Field(1.0, ge=0)
    max_concurrency: int = Field(8, ge=1)  # concurrent API calls per provider
    max_calls: int | None = Field(None, ge=1)  # budget: model calls (cache hits are free)
    max_cost_usd: float | None = Field(None, gt=0)  # budget: dollars (API models)
    cache: CacheConfig = CacheConfig()
    local: LocalEngineConfig = LocalEngineConfig()
