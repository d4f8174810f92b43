"""The Optimas loop, as four resumable stages over one run directory.

collect   rollouts/iter_000/<component>.jsonl for every optimizable component
fit       lrf/iter_000/ (shared backbone + heads) with held-out alignment metrics
update    iterations 1..N: pick a component (softmax over mean preference gaps), collect
          fresh on-policy rollouts, add the replay buffer, adapt its head, optimize its
          variables against it, accept only if validation improves; history.jsonl
evaluate  initial and final system on the test split; final/system.yaml, summary.json,
          val_score.png

Each stage reads what earlier stages wrote, never their memory, and skips work
already on disk, so `optimas run ... resume=RUN_DIR` continues a killed run.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any

from optimas_cli.config import to_yaml
from optimas_cli.graph import State
from optimas_cli.rewards import LocalRewardModel, PreferencePair
from optimas_cli.run_dir import RunDir
from optimas_cli.stages.collect import collect_rollouts, pairs_from_record
from optimas_cli.stages.evaluate import evaluate_state
from optimas_cli.stages.fit import fit_local_rewards, new_reward_model, save_reward_model
from optimas_cli.stages.update import update_component

log = logging.getLogger("optimas.loop")


def _iter(i: int) -> str:
    return f"iter_{i:03d}"


def draw_inputs(rt, iteration: int, component: str = "") -> list:
    """A fresh seeded draw of train inputs for one collection."""
    train = rt.splits["train"]
    n = min(rt.composed.run.optimizer.collect.num_inputs, len(train))
    return random.Random(f"{rt.composed.run.seed}:{iteration}:{component}").sample(train, n)


# ------------------------------------------------------------------ collect


def stage_collect(rt, run_dir: RunDir, state: State) -> dict[str, list[dict]]:
    """Initial rollouts for every optimizable component (iteration 0)."""
    cfg = rt.composed.run.optimizer.collect
    out = {}
    for name in rt.system.optimizable:
        path = f"rollouts/{_iter(0)}/{name}.jsonl"
        out[name] = collect_rollouts(rt.system, name, draw_inputs(rt, 0), state, rt.metric, cfg,
                                     run_dir, path, seed=rt.composed.run.seed)
    return out


def load_records(rt, run_dir: RunDir, component: str) -> list[tuple[int, dict]]:
    """Every rollout record of `component` on disk, with its iteration, oldest first.

    Within an iteration, records are ordered by example id, not by the order the
    collection's workers happened to finish them in: the reward model trained on them,
    and every choice made with it, must not depend on thread timing.
    """
    out = []
    for d in sorted((run_dir.path / "rollouts").glob("iter_*")):
        records = run_dir.read_jsonl(f"rollouts/{d.name}/{component}.jsonl")
        for r in sorted(records, key=lambda r: str(r.get("example_id"))):
            out.append((int(d.name[5:]), r))
    return out


def pairs_of(rt, run_dir: RunDir, component: str, limit: int | None = None) -> list[PreferencePair]:
    """Preference pairs of `component`, newest kept when `limit` bounds them (replay buffer)."""
    pairs = [p for _, r in load_records(rt, run_dir, component)
             for p in pairs_from_record(r, rt.system)]
    return pairs[-limit:] if limit is not None and limit > 0 else pairs


# ------------------------------------------------------------------ fit


def stage_fit(rt, run_dir: RunDir) -> tuple[LocalRewardModel, dict[str, Any]]:
    """LRF of iteration 0 on all initial rollouts; loaded from disk when already fitted."""
    directory = run_dir.path / "lrf" / _iter(0)
    if (directory / "metrics.json").exists():
        return LocalRewardModel.load(directory), run_dir.read_json(f"lrf/{_iter(0)}/metrics.json")
    run = rt.composed.run
    pairs = [p for n in rt.system.optimizable for p in pairs_of(rt, run_dir, n)]
    lrf = new_reward_model(rt.system, run.reward, run.seed)
    if not pairs:
        raise RuntimeError("no preference pairs were collected: every candidate scored the same. "
                           "Raise optimizer.collect.num_inputs or num_samples, or check the metric.")
    result = fit_local_rewards(lrf, pairs, run.reward, seed=run.seed)
    save_reward_model(lrf, directory, result, run_dir)
    return lrf, result


# ------------------------------------------------------------------ update


def preference_gaps(rt, run_dir: RunDir) -> dict[str, float]:
    """Mean score gap of each component's pairs: how much its output choice moves the metric."""
    limit = rt.composed.run.optimizer.replay_buffer_size
    gaps = {}
    for name in rt.system.optimizable:
        pairs = pairs_of(rt, run_dir, name, limit)
        gaps[name] = sum(p.score_chosen - p.score_rejected for p in pairs) / len(pairs) if pairs else 0.0
    return gaps


def pick_component(gaps: dict[str, float], temperature: float, rng: random.Random) -> tuple[str, dict]:
    """Softmax sampling over mean preference gaps; returns the name and the probabilities."""
    names = list(gaps)
    top = max(gaps.values())
    weights = [math.exp((gaps[n] - top) / temperature) for n in names]
    total = sum(weights)
    probs = {n: w / total for n, w in zip(names, weights, strict=True)}
    return rng.choices(names, weights=weights, k=1)[0], probs


def evaluate_val(rt, state: State, label: str) -> dict[str, Any]:
    run = rt.composed.run
    return evaluate_state(rt.system, state, rt.splits["val"], rt.metric, workers=run.eval.workers,
                          label=label, show_progress=False)


def _wall_time(run_dir: RunDir) -> float | None:
    """Seconds since the run's first log line (a resumed run counts from its first start)."""
    from datetime import datetime

    try:
        first = (run_dir.path / "run.log").read_text().split(" INFO", 1)[0]
        return round((datetime.now() - datetime.strptime(first[:19], "%Y-%m-%d %H:%M:%S"))
                     .total_seconds(), 1)
    except (OSError, ValueError):
        return None


def _short(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("mean", "std", "n", "failed") if k in summary}


def prompt_history(history: list[dict], component: str) -> list[tuple[str, float]]:
    """(instruction, LRF score) of every prompt candidate tried for `component` so far."""
    out = []
    for h in history:
        if h.get("component") != component:
            continue
        for var in h.get("update", {}).get("variables", []):
            if var["type"] == "prompt":
                out += [(c["value"]["instruction"], c["lrf"]) for c in var["candidates"]
                        if c["lrf"] is not None]
    return out


def accepted_val(record: dict[str, Any]) -> float:
    """Validation score of the system a history record leaves in place."""
    if record.get("kind") == "initial":
        return record["val"]["mean"]
    return record["val_after"] if record["accepted"] else record["val_before"]


def stage_update(rt, run_dir: RunDir, lrf: LocalRewardModel, state: State) -> State:
    """Iterations 1..N; each one appends to history.jsonl, so a restart skips finished ones."""
    run = rt.composed.run
    opt = run.optimizer
    history = run_dir.read_jsonl("history.jsonl")
    if not history:
        val = evaluate_val(rt, state, "val initial")
        history = [{"iteration": 0, "kind": "initial", "val": _short(val), "state": state,
                    **rt.spent()}]
        run_dir.append_jsonl("history.jsonl", history[0])
    last = history[-1]
    state = last["state"]
    val_score = accepted_val(last)
    if last.get("lrf_dir"):  # resume with the reward model as the last finished iteration left it
        lrf = LocalRewardModel.load(run_dir.path / last["lrf_dir"])
    for it in range(len(history), opt.num_iterations + 1):
        if opt.budget_system_runs is not None and rt.system.runs >= opt.budget_system_runs:
            log.info("budget_system_runs=%d spent (%d runs): no iteration %d",
                     opt.budget_system_runs, rt.system.runs, it)
            break
        t0 = time.perf_counter()
        rng = random.Random(f"{run.seed}:select:{it}")
        gaps = preference_gaps(rt, run_dir)
        name, probs = pick_component(gaps, opt.selection_temperature, rng)
        log.info("iteration %d: %s (p=%.2f; gaps %s)", it, name, probs[name],
                 {k: round(v, 3) for k, v in gaps.items()})
        fresh = collect_rollouts(rt.system, name, draw_inputs(rt, it, name), state, rt.metric,
                                 opt.collect, run_dir, f"rollouts/{_iter(it)}/{name}.jsonl",
                                 seed=run.seed + it)
        pairs = pairs_of(rt, run_dir, name, opt.replay_buffer_size)
        lrf_dir = run_dir.path / "lrf" / _iter(it)
        adapt = fit_local_rewards(lrf, pairs, run.reward, components=[name], head_only=True,
                                  seed=run.seed + it) if pairs else {"skipped": "no pairs"}
        save_reward_model(lrf, lrf_dir, adapt, run_dir)
        update = update_component(rt.system, name, [r for r in fresh if r["candidates"]], lrf, state,
                                  opt, rt.lm, run.lm.model, prompt_history(history, name),
                                  seed=run.seed + it, reward_dir=lrf_dir)
        changed = update["state"] != state
        record: dict[str, Any] = {
            "iteration": it, "kind": "iteration", "component": name, "selection": probs, "gaps": gaps,
            "pairs": len(pairs), "lrf": adapt.get("heldout", {}).get(name),
            "lrf_dir": str(lrf_dir.relative_to(run_dir.path)), "update": update | {"state": None},
            "val_before": val_score, "changed": changed,
        }
        if changed:
            after = evaluate_val(rt, update["state"], f"val iter {it}")
            record["val_after"] = after["mean"]
            record["accepted"] = after["mean"] - val_score > opt.accept_threshold
        else:
            record["val_after"], record["accepted"] = val_score, False
        if record["accepted"]:
            state, val_score = update["state"], record["val_after"]
        record["state"] = state
        record["seconds"] = time.perf_counter() - t0
        record.update(rt.spent())
        log.info("iteration %d: %s val %.4f -> %.4f, %s", it, name, record["val_before"],
                 record["val_after"], "accepted" if record["accepted"] else "reverted")
        run_dir.append_jsonl("history.jsonl", record)
        history.append(record)
    return state


# ------------------------------------------------------------------ evaluate


def stage_final(rt, run_dir: RunDir, initial: State, final: State) -> dict[str, Any]:
    """Test scores of the initial and final systems (eval.repeats each), summary and plot."""
    run = rt.composed.run
    run_dir.write_text("final/system.yaml", to_yaml({"state": final}))
    tests = {}
    for which, state in (("initial", initial), ("final", final)):
        name = f"test/{which}.json"
        if (run_dir.path / name).exists() and run_dir.read_json(name).get("state") == state:
            tests[which] = run_dir.read_json(name)  # already evaluated (a resumed run)
            continue
        (run_dir.path / f"test/{which}_predictions.jsonl").unlink(missing_ok=True)
        s = evaluate_state(rt.system, state, rt.splits["test"], rt.metric, workers=run.eval.workers,
                           repeats=run.eval.repeats, label=f"test {which}",
                           on_result=lambda r, w=which: run_dir.append_jsonl(
                               f"test/{w}_predictions.jsonl", r), show_progress=False)
        s["state"] = state
        run_dir.write_json(name, s)
        tests[which] = s
    history = run_dir.read_jsonl("history.jsonl")
    plot_val(history, run_dir.path / "val_score.png")
    summary = build_summary(rt, run_dir, tests, history)
    run_dir.write_json("summary.json", summary)
    return summary


def build_summary(rt, run_dir: RunDir, tests: dict, history: list[dict]) -> dict[str, Any]:
    fit0 = run_dir.read_json(f"lrf/{_iter(0)}/metrics.json") if (
        run_dir.path / "lrf" / _iter(0) / "metrics.json").exists() else {}
    lm_usage = rt.lm.usage_summary() if hasattr(rt.lm, "usage_summary") else {}
    iters = [h for h in history if h.get("kind") == "iteration"]
    return {
        "optimizer": rt.composed.run.optimizer.name,
        "test": {w: {k: t[k] for k in ("mean", "std", "n", "failed", "repeats", "repeat_means",
                                       "metrics") if k in t} for w, t in tests.items()},
        "test_improvement": tests["final"]["mean"] - tests["initial"]["mean"],
        "val": {"initial": accepted_val(history[0]) if history else None,
                "final": accepted_val(history[-1]) if history else None},
        "lrf_heldout": fit0.get("heldout", {}),
        "iterations": [{k: h.get(k) for k in ("iteration", "component", "val_before", "val_after",
                                               "accepted", "changed", "seconds")} for h in iters],
        "accepted": sum(1 for h in iters if h["accepted"]),
        **rt.spent(),  # test evaluations included
        "wall_time_s": _wall_time(run_dir),
        "lm": lm_usage.get("total", lm_usage),
    }


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


# ------------------------------------------------------------------ all together


def run_loop(rt, run_dir: RunDir, show_progress: bool = True, stages: tuple[str, ...] = (
        "collect", "fit", "update", "evaluate")) -> dict[str, Any]:
    """`optimas run`: the stages in order, each skipping what is already on disk."""
    initial = rt.state
    history = run_dir.read_jsonl("history.jsonl")
    final = history[-1]["state"] if history else initial
    name = rt.composed.run.optimizer.name
    if name != "optimas":
        from optimas_cli.baselines import run_baseline

        if name == "none" and not history:  # the unoptimized system's val score, for compare
            val = evaluate_val(rt, initial, "val initial")
            run_dir.append_jsonl("history.jsonl", {
                "iteration": 0, "kind": "initial", "val": _short(val), "state": initial,
                **rt.spent()})
        if "update" in stages or name == "none":
            final = run_baseline(name, rt, run_dir, initial)
        return stage_final(rt, run_dir, initial, final) if "evaluate" in stages else {}
    if rt.composed.run.optimizer.num_iterations == 0:
        stages = tuple(s for s in stages if s == "evaluate")
    if "collect" in stages:
        stage_collect(rt, run_dir, initial)
    lrf = None
    if "fit" in stages or "update" in stages:
        lrf, _ = stage_fit(rt, run_dir)
    if "update" in stages:
        final = stage_update(rt, run_dir, lrf, initial)
    if "evaluate" in stages:
        return stage_final(rt, run_dir, initial, final)
    return {"stages": list(stages), "history": len(run_dir.read_jsonl("history.jsonl"))}
