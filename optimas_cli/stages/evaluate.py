"""Evaluate a system state on a split: concurrent examples, per-example traces, summary metrics."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from optimas_cli import failures, layout, progress
from optimas_cli.data import Example
from optimas_cli.graph import State, System
from optimas_cli.lm.base import RunStopped
from optimas_cli.metrics import Metric, MetricReturnError, scores_of

log = logging.getLogger("optimas.evaluate")


@dataclass(frozen=True)
class EvalOptions:
    """How an evaluation runs and reports: `workers` examples in flight at once; `label`
    names its progress bar and its failures (failures.jsonl); `on_result` gets each
    example's result as it finishes; `show_progress`: its bar goes to the command's
    progress reporter (optimas_cli.progress; none outside a command, or with -q).
    `max_failed_share`: over this share of failed examples the evaluation raises
    failures.EvaluationFailed (None: never); `all_failed`: so does every example failing."""

    workers: int = 4
    label: str = "evaluate"
    on_result: Callable[[dict[str, Any]], None] | None = None
    show_progress: bool = True
    max_failed_share: float | None = None
    all_failed: bool = False


def evaluate_example(system: System, state: State, example: Example, metric: Metric,
                     seed: int = 0) -> dict[str, Any]:
    """Run one example; a failure scores 0 and keeps its error, never dropped."""
    trace = system.run(example.inputs, state, seed=seed)
    if trace.error:
        scores, error = {"score": 0.0}, trace.error
    else:
        try:
            scores, error = scores_of(metric, example, trace.fields), None
        except MetricReturnError as e:  # names the metric and what it must return
            scores, error = {"score": 0.0}, f"metric: {e}"
        except Exception as e:  # noqa: BLE001 - a metric crash is this example's failure
            scores, error = {"score": 0.0}, f"metric: {type(e).__name__}: {e}"
    return {"id": example.id, "score": float(scores["score"]), "metrics": scores, "error": error,
            "prediction": trace.fields.get(system.cfg.final_output), "target": example.target,
            "trace": trace.to_dict()}


def evaluate_examples(system: System, state: State, examples: list[Example], metric: Metric,
                      opts: EvalOptions | None = None, *, seed: int = 0) -> list[dict[str, Any]]:
    """Results in example order. Examples run `opts.workers` at a time, sampling with `seed`.

    RunStopped (a spent budget, a rejected key) stops submitting new work; the results
    finished so far have already gone to `opts.on_result`, then the exception propagates.
    Every failed example goes to the run directory's failures.jsonl under `opts.label`
    (optimas_cli.failures); past `opts.max_failed_share` of them (or, `opts.all_failed`,
    all of them), EvaluationFailed is raised once every result has gone to `on_result`.
    """
    opts = opts or EvalOptions()
    workers, label, on_result = opts.workers, opts.label, opts.on_result
    results: dict[int, dict[str, Any]] = {}
    with failures.tally("evaluate", label, len(examples)) as failed, \
            progress.evaluation(label, len(examples), show=opts.show_progress) as bar, \
            ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(evaluate_example, system, state, ex, metric, seed): i
                   for i, ex in enumerate(examples)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                if fut.exception() is not None:
                    for p in pending:
                        p.cancel()
                    raise fut.exception()
                result = results[futures[fut]] = fut.result()
                if result["error"]:
                    failed.add(result["id"], result["error"])
                if on_result:
                    on_result(result)
                bar.advance()
        bar.note = (f"score {statistics.fmean(r['score'] for r in results.values()):.3f}, "
                    f"{sum(1 for r in results.values() if r['error'])} failed") if results else ""
        if opts.max_failed_share is not None:
            failed.check(len(examples), opts.max_failed_share, all_failed=opts.all_failed)
    return [results[i] for i in range(len(examples))]


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values) if values else 0.0,
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0}


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean/std of the score and every metric, failures, and LM usage per component."""
    scores = [r["score"] for r in results]
    names = sorted({k for r in results if not r["error"] for k in r["metrics"]})
    per_component: dict[str, dict[str, float]] = {}
    for r in results:
        for step in r["trace"]["steps"]:
            agg = per_component.setdefault(step["component"], {
                "calls": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                "latency_s": 0.0, "cost_usd": 0.0, "errors": 0})
            for k, v in step["usage"].items():
                agg[k] += v
            agg["errors"] += bool(step["error"])
    return {
        "n": len(results), **mean_std(scores),
        "scores": scores,  # per example, in example order: paired comparisons need them
        "failed": sum(1 for r in results if r["error"]),
        "metrics": {k: mean_std([r["metrics"].get(k, 0.0) for r in results]) for k in names},
        "per_component": per_component,
    }


def evaluate_state(system: System, state: State, examples: list[Example], metric: Metric,
                   opts: EvalOptions, *, repeats: int = 1) -> dict[str, Any]:
    """Evaluate `repeats` times (sampling seed = repeat index); mean/std are over repeat means.
    `opts.on_result` gets each result with its "repeat"."""
    t0 = time.perf_counter()
    per_repeat = []
    label, on_result = opts.label, opts.on_result
    for rep in range(repeats):
        def tagged(r: dict[str, Any], rep: int = rep) -> None:
            if on_result:
                on_result({"repeat": rep, **r})
        one = replace(opts, label=f"{label} {rep + 1}/{repeats}" if repeats > 1 else label,
                      on_result=tagged)
        results = evaluate_examples(system, state, examples, metric, one, seed=rep)
        per_repeat.append(summarize(results))
    means = [s["mean"] for s in per_repeat]
    out = dict(per_repeat[0]) if repeats == 1 else {
        "n": per_repeat[0]["n"], **mean_std(means), "failed": sum(s["failed"] for s in per_repeat),
        "scores": [statistics.fmean(x) for x in zip(*(s["scores"] for s in per_repeat), strict=True)],
        "metrics": {k: mean_std([s["metrics"][k]["mean"] for s in per_repeat])
                    for k in per_repeat[0]["metrics"]},
        "per_component": _sum_components([s["per_component"] for s in per_repeat]),
    }
    out["repeats"] = repeats
    out["repeat_means"] = means
    out["wall_time_s"] = time.perf_counter() - t0
    return out


def _sum_components(parts: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    total: dict[str, dict[str, float]] = {}
    for part in parts:
        for comp, usage in part.items():
            agg = total.setdefault(comp, dict.fromkeys(usage, 0))
            for k, v in usage.items():
                agg[k] += v
    return total


def run_evaluate(rt, run_dir, *, split: str | None = None, show_progress: bool = True) -> dict[str, Any]:
    """The `evaluate` stage: writes predictions.jsonl and metrics.json into the run directory."""
    cfg = rt.composed.run
    split = split or cfg.eval.split
    examples = rt.splits[split]
    log.info("evaluating %d %s examples with %d workers", len(examples), split, cfg.eval.workers)
    progress.stage("evaluate", detail=f"{len(examples)} {split} examples")
    (run_dir.path / layout.PREDICTIONS).unlink(missing_ok=True)
    summary: dict[str, Any] = {}
    try:
        opts = EvalOptions(workers=cfg.eval.workers, label=split,
                           on_result=lambda r: run_dir.append_jsonl(layout.PREDICTIONS, r),
                           show_progress=show_progress,
                           max_failed_share=cfg.eval.max_failed_share)
        summary = evaluate_state(rt.system, rt.state, examples, rt.metric, opts,
                                 repeats=cfg.eval.repeats)
    except RunStopped as e:
        summary = {"stopped": str(e), "completed": len(run_dir.read_jsonl(layout.PREDICTIONS))}
        raise
    except failures.EvaluationFailed as e:
        summary = {"evaluation_failed": str(e),
                   "completed": len(run_dir.read_jsonl(layout.PREDICTIONS))}
        raise
    finally:
        summary["split"] = split
        summary["lm"] = rt.lm.usage_summary() if hasattr(rt.lm, "usage_summary") else {}
        run_dir.write_json(layout.METRICS, summary)
    log.info("%s score %.4f ± %.4f over %d examples (%d failed)", split, summary["mean"],
             summary["std"], summary["n"], summary["failed"])
    return summary
