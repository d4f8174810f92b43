"""Optimize a `weights` variable: train the component's LoRA adapter against its local reward.

The update step (methods/optimas/update.py) runs it only when the component's local reward
is trusted (optimas_cli/rewards/trust.py); otherwise the adapter stays. One update, for
the component's collected inputs:

1. its real requests (optimas_cli/components/llm.py `request`, the current prompt and
   adapter) rendered to the text the model reads: the training prompts;
2. the policy: the base model in transformers with the *current* adapter (or a fresh
   LoRA for null) as the trainable "default" adapter (optimas_cli/weights/adapter.py);
3. `optimizer.update.weights.method`: `dpo` ranks `samples` completions per prompt, sampled
   through llama.cpp with the current adapter, by the LRF and trains on best vs worst;
   `grpo` runs TRL's GRPO with the LRF as the reward (optimas_cli/weights/methods.py);
4. KL(new || start) measured on the prompts (optimas_cli/weights/kl.py); above
   `max_kl` the new adapter is refused;
5. the adapter saved to `<run_dir>/weights/<component>/iter_NNN/` (peft + llama.cpp GGUF),
   served by llama.cpp, and kept only if its greedy outputs beat the current adapter's by
   the LRF on most inputs (as a new prompt must).

The history record gets the candidates' LRF scores, the KL, seconds and peak memory.
"""

from __future__ import annotations

import logging
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from optimas_cli.graph import Call, System
from optimas_cli.heap import peak_rss_mb
from optimas_cli.lm.base import LM
from optimas_cli.methods.optimas.updaters.common import (
    UpdateContext,
    beats_incumbent,
    lrf_score_values,
)
from optimas_cli.schema import WeightsUpdateConfig

log = logging.getLogger("optimas.weights")


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sample_texts(system: System, name: str, inputs: list[dict], values: dict[str, Any], lm: LM,
                 cfg: WeightsUpdateConfig, seed: int, workers: int) -> list[list[str]]:
    """`cfg.samples` completions per input from the component's current policy (llama.cpp)."""
    comp = system.components[name]

    def one(job: tuple[int, int]) -> str:
        i, k = job
        call = Call(lm=lm, component=name, temperature=cfg.temperature, sample_index=k, seed=seed)
        return lm.complete(comp.request(inputs[i], values, call), component=name).text

    jobs = [(i, k) for i in range(len(inputs)) for k in range(cfg.samples)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        texts = list(pool.map(one, jobs))
    return [texts[i * cfg.samples:(i + 1) * cfg.samples] for i in range(len(inputs))]


def train_adapter(ctx: UpdateContext, vname: str, inputs: list[dict],
                  out_dir: Path) -> dict[str, Any]:
    """Train `ctx.name`'s adapter from its current value on `inputs`; save it to `out_dir`.

    The component's values are `ctx.state`'s, the method and its settings
    `ctx.cfg.weights`; `ctx.lrf` needs only `.score(component, inputs, outputs) ->
    list[float]` (`ctx.records` is not read). Returns what the update did: method, pairs
    or per-step log, KL, seconds, peak memory.
    """
    import torch

    from optimas_cli.weights.adapter import load_policy, save_adapter
    from optimas_cli.weights.kl import measure_kl
    from optimas_cli.weights.methods import METHODS
    from optimas_cli.weights.task import TrainTask, prompt_text, stop_token_ids

    system, name, lm, seed, cfg = ctx.system, ctx.name, ctx.lm, ctx.seed, ctx.cfg.weights
    values = dict(ctx.state[name])
    comp = system.components[name]
    var = comp.variables[vname]
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        model, tokenizer = load_policy(comp.weights_model(), values.get(vname), var.lora)
        requests = [comp.request(x, values, Call(lm=lm, component=name, seed=seed)) for x in inputs]
        prompts = [prompt_text(tokenizer, r, cfg.max_prompt_tokens) for r in requests]

        def reward(indices: list[int], texts: list[str]) -> list[float]:
            outs = [comp.parse(t) for t in texts]
            return [float(s) for s in ctx.lrf.score(name, [inputs[i] for i in indices], outs)]

        task = TrainTask(prompts=prompts, reward=reward, stop=requests[0].stop,
                         max_new_tokens=requests[0].max_tokens)
        info: dict[str, Any] = {"method": cfg.method, "prompts": len(prompts),
                                "torch_threads": torch.get_num_threads()}
        if cfg.method == "dpo":
            samples = sample_texts(system, name, inputs, values, lm, cfg, seed, ctx.workers)
            for i, texts in enumerate(samples):
                scores = reward([i] * len(texts), texts)
                best, worst = scores.index(max(scores)), scores.index(min(scores))
                if scores[best] > scores[worst] and texts[best] != texts[worst]:
                    task.pairs.append((i, texts[best], texts[worst]))
            info["sample_seconds"] = round(time.perf_counter() - t0, 2)
        with tempfile.TemporaryDirectory(prefix="optimas-trl-") as workdir:
            info |= METHODS[cfg.method](model, tokenizer, task, cfg, workdir, seed)
        if "skipped" in info:
            return info
        info |= measure_kl(model, tokenizer, prompts, cfg.kl_samples, task.max_new_tokens,
                           stop_token_ids(tokenizer, task.stop), seed=seed)
        info["seconds"] = round(time.perf_counter() - t0, 2)
        info["cpu_seconds"] = round(cpu_seconds() - cpu0, 2)  # all threads; wall time varies with load
        info["peak_rss_mb"] = peak_rss_mb()
        save_adapter(model, out_dir, comp.weights_model(), {"update": info, "start": values.get(vname)})
    finally:
        torch.set_num_threads(threads)
    log.info("%s.%s: %s update in %.1f s, KL %.3f nats", name, vname, cfg.method, info["seconds"],
             info["kl"])
    return info


def optimize_weights(ctx: UpdateContext, vname: str,
                     out_dir: Path | None = None) -> dict[str, Any]:
    """One adapter update of `ctx.name`.`vname`, saved to `out_dir`; the new adapter is `best`
    only if the KL bound holds and it beats the current one by the local reward on most of
    the scoring inputs."""
    from optimas_cli.weights.adapter import META, read_meta

    system, name, lrf, state, workers = ctx.system, ctx.name, ctx.lrf, ctx.state, ctx.workers
    wcfg = ctx.cfg.weights
    current = state[name][vname]
    result: dict[str, Any] = {"variable": vname, "type": "weights", "method": wcfg.method,
                              "best": current, "candidates": []}
    if out_dir is None:
        return result | {"skipped": "no directory to save adapters in (weights/ of a run)"}
    records = ctx.records[:ctx.cfg.per_component_train_size]
    comp = system.cfg.components[name]
    inputs = [{k: r["fields"][k] for k in comp.inputs} for r in records]
    values = dict(state[name])
    incumbent = {"value": current, **lrf_score_values(system, name, values, records, lrf, state,
                                                      workers)}
    if (out_dir / META).exists():  # trained before a restart
        info = read_meta(out_dir)["update"]
    else:
        info = train_adapter(ctx, vname, inputs, out_dir)
    if "skipped" in info:
        return result | {"update": info, "candidates": [incumbent], "refused": info["skipped"]}
    new = str(out_dir.resolve())
    candidate = {"value": new, **lrf_score_values(system, name, {**values, vname: new}, records,
                                                  lrf, state, workers)}
    result |= {"update": info, "kl": info.get("kl"), "candidates": [incumbent, candidate]}
    if incumbent["lrf"] is not None and candidate["lrf"] is not None:
        result["lrf_gain"] = candidate["lrf"] - incumbent["lrf"]
    if wcfg.max_kl is not None and info.get("kl", 0.0) > wcfg.max_kl:
        result["refused"] = f"KL {info['kl']:.3f} > optimizer.update.weights.max_kl={wcfg.max_kl}"
    elif beats_incumbent(candidate, incumbent):
        result["best"] = new
    else:
        result["refused"] = "the new adapter does not beat the current one by the LRF on most inputs"
    return result
