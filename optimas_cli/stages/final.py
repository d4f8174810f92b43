"""The final stage of every method: test scores of the initial and final systems, the summary.

Writes final/system.yaml, test/{initial,final}.json with their predictions,
summary.json (test before/after with the paired difference and its interval,
LRF alignment, spend) and val_score.png.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimas_cli import attempts, layout, progress
from optimas_cli.budget import cpu_seconds, inference_cost, optimization_and_test
from optimas_cli.config import to_yaml
from optimas_cli.graph import State
from optimas_cli.heap import peak_rss_mb
from optimas_cli.history import accepted_val, contributions, steps_of
from optimas_cli.run_dir import RunDir
from optimas_cli.stages.evaluate import EvalOptions, evaluate_state
from optimas_cli.stats import paired_diff

if TYPE_CHECKING:
    from optimas_cli.runtime import Runtime


def stage_final(rt: Runtime, run_dir: RunDir, initial: State, final: State) -> dict[str, Any]:
    """Test scores of the initial and final systems (eval.repeats each), summary and plot."""
    run = rt.composed.run
    run_dir.write_text(layout.FINAL_SYSTEM, to_yaml({"state": final}))
    tests = {}
    for which, state in (("initial", initial), ("final", final)):
        name = layout.final_test(which)
        if (run_dir.path / name).exists() and run_dir.read_json(name).get("state") == state:
            tests[which] = run_dir.read_json(name)  # already evaluated (a resumed run)
            continue
        (run_dir.path / layout.final_test_predictions(which)).unlink(missing_ok=True)
        progress.stage("test", detail=f"{which} system")
        opts = EvalOptions(workers=run.eval.workers, label=f"test {which}",
                           on_result=lambda r, w=which: run_dir.append_jsonl(
                               layout.final_test_predictions(w), r),
                           max_failed_share=run.eval.max_failed_share)
        s = evaluate_state(rt.system, state, rt.splits["test"], rt.metric, opts,
                           repeats=run.eval.repeats)
        s["state"] = state
        run_dir.write_json(name, s)
        tests[which] = s
    history = run_dir.read_jsonl(layout.HISTORY)
    with run_dir.writing(layout.VAL_PLOT) as path:
        plot_val(history, path)
    summary = build_summary(rt, run_dir, tests, history)
    run_dir.write_json(layout.SUMMARY, summary)
    return summary


def wall_time(run_dir: RunDir) -> float | None:
    """Seconds the run's processes ran, summed over its attempts (optimas_cli.attempts); for
    a directory from before attempts.jsonl, seconds since its first log line."""
    active = attempts.run_seconds(run_dir.path)
    if active is not None:
        return active
    try:
        first = (run_dir.path / layout.LOG).read_text().split(" INFO", 1)[0]
        return round((datetime.now() - datetime.strptime(first[:19], "%Y-%m-%d %H:%M:%S"))
                     .total_seconds(), 1)
    except (OSError, ValueError):
        return None


def build_summary(rt: Runtime, run_dir: RunDir, tests: dict, history: list[dict]) -> dict[str, Any]:
    fit0_path = f"{layout.lrf(0)}/{layout.METRICS}"
    fit0 = run_dir.read_json(fit0_path) if (run_dir.path / fit0_path).exists() else {}
    lm_usage = rt.lm.usage_summary() if hasattr(rt.lm, "usage_summary") else {}
    iters = [h for h in history if h.get("kind") == "iteration"]
    keys = ("mean", "std", "n", "failed", "repeats", "repeat_means", "metrics", "scores")
    out = {
        "optimizer": rt.composed.run.optimizer.name,
        "test": {w: {k: t[k] for k in keys if k in t} for w, t in tests.items()},
        "test_improvement": tests["final"]["mean"] - tests["initial"]["mean"],
        # per test question: tokens and LM seconds of each system (budget.inference_cost)
        "inference": inference_of(tests),
        "val": {"initial": accepted_val(history[0]) if history else None,
                "final": accepted_val(history[-1]) if history else None},
        # held-out alignment per component: of its latest fit (iteration 0 if eager)
        "lrf_heldout": fit0.get("heldout", {}) | {s["component"]: s["lrf"] for h in iters
                                                  for s in steps_of(h) if s.get("lrf") is not None},
        "iterations": [{k: h.get(k) for k in ("iteration", "component", "val_before", "val_after",
                                               "accepted", "changed", "skipped", "seconds")}
                       for h in iters],
        "accepted": sum(1 for h in iters if h.get("accepted")),
        # per changed variable: the validation gain of the accepted steps that changed it
        "contributions": contributions(history),
        # the optimization's spend (history's last record) and the test evaluations' apart
        **optimization_and_test(rt.spent(), history[-1] if history else None),
        "wall_time_s": wall_time(run_dir),
        "cpu_s": cpu_seconds(),  # this process's and its children's (a resumed run: since then)
        # this process's peak (a resumed run: since the resume), the mapped GGUF weights included
        "peak_rss_mb": peak_rss_mb(),
        "lm": lm_usage.get("total", lm_usage),
    }
    a, b = tests["final"].get("scores"), tests["initial"].get("scores")
    if a is not None and b is not None:
        out["test_paired"] = paired_diff(a, b, seed=rt.composed.run.seed).to_dict()
    return out


def inference_of(tests: dict[str, dict]) -> dict[str, dict]:
    """Inference cost per test question of the initial and final systems. A final system
    equal to the initial one costs what the initial one measured (its own evaluation was
    answered from the cache, so it measured no LM second)."""
    out = {w: inference_cost(t) for w, t in tests.items()}
    if tests["final"].get("state") == tests["initial"].get("state"):
        out["final"] = out["initial"]
    return out


def plot_val(history: list[dict], path: Path) -> None:
    """Validation score of the accepted system after each iteration, candidates as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    xs, ys, tried = [], [], []
    for h in history:
        xs.append(h["iteration"])
        ys.append(accepted_val(h))
        if h.get("changed"):
            tried.append((h["iteration"], h["val_after"], h["component"]))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.step(xs, ys, where="post", label="accepted system")
    if tried:
        ax.scatter([t[0] for t in tried], [t[1] for t in tried], marker="x", color="gray",
                   label="candidate")
        for x, y, comp in tried:
            ax.annotate(comp, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation score")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
