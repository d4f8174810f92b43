"""`optimas compare RUN_DIR...`: methods side by side, over seeds, from finished run directories.

A directory is a run directory (it has config.yaml, written when the run starts),
or a folder holding run directories at any depth (a multirun sweep, runs/<system>/).
Runs are grouped by (optimizer.name, system.name) from their config.yaml (the method's name
is "<optimizer.name>:<tag>" for a run with a `tag`), plus any `--by` keys; the runs of a
group are its seeds. Per group:

  test         mean and std (sample, n-1) over seeds of summary.json test.final.mean
  initial      the same for test.initial.mean (the unoptimized system)
  spend        system runs, component calls, LM calls, requests and tokens of the
               optimization (the last history record; test excluded; optimas_cli/budget.py
               defines each), mean over seeds; "replay": requests and no calls
  wall time    per run, from the first run.log line to DONE, mean over seeds
  CPU s        per run, its process's and children's CPU seconds, mean over seeds
  inference    the final system's tokens and LM seconds per test question
               (summary.json inference.final, budget.inference_cost), mean over seeds

With --out DIR: compare.md, compare.csv (a row per group), compare.png (accepted
validation against system runs spent, a line per method, seeds thin, their mean bold) and
cost.png (test score against tokens per test question of each final system).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.markup import escape

from optimas_cli import datasets_registry, layout, versus
from optimas_cli.compare_tables import per_seed_markdown, rich_table, to_markdown, write_csv
from optimas_cli.history import accepted_val
from optimas_cli.run_dir import RunDir
from optimas_cli.schema import RunConfig
from optimas_cli.stats import pooled_paired_diff


@dataclass
class Run:
    path: Path
    method: str
    system: str
    seed: Any
    key: tuple[str, ...]  # values of the extra grouping keys
    test: float
    initial: float | None
    system_runs: int
    lm_calls: int
    lm_requests: int
    wall_time_s: float | None
    curve: list[tuple[int, float]] = field(default_factory=list)  # (system runs, accepted val)
    lm_tokens: int | None = None
    component_calls: int = 0  # archived runs from before the Budget: 0
    # per test question, in the same order: the final and the initial system
    final_scores: list[float] | None = None
    initial_scores: list[float] | None = None
    data: str = ""  # the data config: runs are paired question by question only when equal
    # the system's other test metrics of the final system (PubMedQA: said_yes, parsed), means
    metrics: dict[str, float] = field(default_factory=dict)
    # the final system's inference cost per test question (budget.inference_cost)
    inference: dict[str, float | None] = field(default_factory=dict)
    val: float | None = None  # the accepted system's validation score at the end
    cpu_s: float | None = None  # CPU seconds of the run's process (budget.cpu_seconds)


# ------------------------------------------------------------------ reading


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories in or under `paths` (sorted, each once); hidden folders are skipped."""
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if not p.is_dir():
            raise FileNotFoundError(f"{p} is not a directory")
        if (p / layout.CONFIG).is_file():
            found[p.resolve()] = None
            continue
        for cfg in sorted(p.rglob(layout.CONFIG)):
            rel = cfg.parent.relative_to(p).parts
            if any(part.startswith(".") for part in rel):
                continue  # e.g. Hydra's .hydra/config.yaml
            found[cfg.parent.resolve()] = None
    return list(found)


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _wall_time(rd: RunDir) -> float | None:
    """Seconds from the first run.log line to the time in DONE (a resumed run: first start)."""
    log, done = rd.path / layout.LOG, rd.path / layout.DONE
    if not (log.exists() and done.exists()):
        return None
    try:
        first = log.read_text(encoding="utf-8").splitlines()[0]
        start = datetime.strptime(first[:23], "%Y-%m-%d %H:%M:%S,%f")
        end = datetime.fromisoformat(done.read_text(encoding="utf-8").strip())
    except (IndexError, ValueError):
        return None
    return (end - start).total_seconds()


def load_run(path: Path, by: tuple[str, ...] = ()) -> Run | None:
    """One run's numbers; None when it has no summary.json (unfinished or `evaluate` only)."""
    rd = RunDir(path)
    if not (path / layout.SUMMARY).exists():
        return None
    cfg = yaml.safe_load((path / layout.CONFIG).read_text(encoding="utf-8")) or {}
    summary = rd.read_json(layout.SUMMARY)
    history = rd.read_jsonl(layout.HISTORY)
    last = history[-1] if history else {}
    method = summary.get("optimizer") or _get(cfg, "optimizer.name") or "optimas"
    return Run(
        path=path,
        method=f"{method}:{cfg['tag']}" if cfg.get("tag") else method,
        system=_get(cfg, "system.name") or "?",
        seed=cfg.get("seed", RunConfig.model_fields["seed"].default),  # a YAML may leave it out
        key=tuple(str(_get(cfg, k)) for k in by),
        test=float(summary["test"]["final"]["mean"]),
        initial=(float(summary["test"]["initial"]["mean"]) if "initial" in summary["test"]
                 else None),
        system_runs=int(last.get("system_runs", 0)),
        lm_calls=int(last.get("lm_calls", 0)),
        lm_requests=int(last.get("lm_requests", last.get("lm_calls", 0))),
        wall_time_s=summary.get("wall_time_s", _wall_time(rd)),
        curve=[(int(h["system_runs"]), float(accepted_val(h))) for h in history
               if "system_runs" in h],
        lm_tokens=last.get("lm_tokens"), component_calls=int(last.get("component_calls", 0)),
        final_scores=summary["test"]["final"].get("scores"),
        initial_scores=summary["test"].get("initial", {}).get("scores"),
        data=json.dumps(datasets_registry.with_registered_path(cfg.get("data")), sort_keys=True),
        metrics={k: float(v["mean"]) for k, v in
                 summary["test"]["final"].get("metrics", {}).items()
                 if k != "score" and isinstance(v, dict) and "mean" in v},
        inference=(summary.get("inference") or {}).get("final") or {},
        val=(summary.get("val") or {}).get("final"),
        cpu_s=summary.get("cpu_s"),
    )


# ------------------------------------------------------------------ aggregating


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _std(xs: list[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) > 1 else (0.0 if xs else None)


def label_of(run: Run, by: tuple[str, ...]) -> str:
    extra = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(by, run.key, strict=True))
    return f"{run.method} [{extra}]" if extra else run.method


def group(runs: list[Run], by: tuple[str, ...] = ()) -> dict[tuple[str, str], list[Run]]:
    """(method label, system) -> its runs (seeds), in first-seen order."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((label_of(r, by), r.system), []).append(r)
    return groups


def paired_to_initial(rs: list[Run]) -> dict[str, Any]:
    """Final minus initial test score, paired by question, with a 95% bootstrap interval over
    the questions (seeds on one split averaged per question, `stats.pooled_paired_diff`);
    empty when a run lacks per-question scores."""
    if not rs or any(r.final_scores is None or r.initial_scores is None for r in rs):
        return {}
    d = pooled_paired_diff([(r.final_scores, r.initial_scores, r.data) for r in rs],
                           confidence=0.95)
    return {"diff_mean": d.mean, "diff_low": d.low, "diff_high": d.high, "diff_n": d.n,
            "diff_sign_p": d.sign_p}


def other_metrics(rs: list[Run]) -> dict[str, float]:
    """Mean over seeds of each test metric every run reports, leaving out those equal to the
    score in every run (the score's own metric): what the score hides, e.g. a PubMedQA system
    that says "yes" to everything (said_yes 1.0)."""
    names = set.intersection(*(set(r.metrics) for r in rs)) if rs else set()
    return {n: statistics.fmean(r.metrics[n] for r in rs) for n in sorted(names)
            if any(abs(r.metrics[n] - r.test) > 1e-12 for r in rs)}


def table(runs: list[Run], by: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per (method, system): test mean/std over seeds, the paired difference to the
    initial system, and mean spend."""
    rows = []
    for (method, system), rs in group(runs, by).items():
        tests = [r.test for r in rs]
        inits = [r.initial for r in rs if r.initial is not None]
        walls = [r.wall_time_s for r in rs if r.wall_time_s is not None]
        rows.append({
            "method": method, "system": system, "seeds": len(rs),
            "test_mean": _mean(tests), "test_std": _std(tests),
            "initial_mean": _mean(inits), "initial_std": _std(inits),
            "diff_mean": None, "diff_low": None, "diff_high": None, "diff_n": None,
            "diff_sign_p": None,
            **paired_to_initial(rs),
            "system_runs": _mean([r.system_runs for r in rs]),
            "component_calls": _mean([r.component_calls for r in rs]),
            "lm_calls": _mean([r.lm_calls for r in rs]),
            "lm_requests": _mean([r.lm_requests for r in rs]),
            "lm_tokens": _mean([r.lm_tokens for r in rs if r.lm_tokens is not None]),
            "wall_time_s": _mean(walls),
            "cpu_s": _mean([r.cpu_s for r in rs if r.cpu_s is not None]),
            **{k: _mean([r.inference[k] for r in rs if r.inference.get(k) is not None])
               for k in ("tokens_per_question", "lm_seconds_per_question")},
            # seeds whose every LM request was a cache hit: their calls, tokens and wall
            # time are those of a replay, not what the method costs
            "replayed": sum(1 for r in rs if r.lm_calls == 0 and r.lm_requests > 0),
            "test_metrics": other_metrics(rs),
            "runs": " ".join(str(r.path) for r in rs),
        })
    rows.sort(key=lambda r: (r["system"], r["method"]))
    return rows


# ------------------------------------------------------------------ writing


def _per_system_figure(groups: dict[tuple[str, str], list[Run]], path: Path, empty: str,
                       labels: tuple[str, str], draw) -> None:
    """One panel per system, one color per method: `draw(ax, runs, color, label)` draws a
    method's runs on its system's panel; `labels` are the axes' (x, y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = sorted({s for _, s in groups}) or [empty]
    fig, axes = plt.subplots(1, len(systems), figsize=(6 * len(systems), 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = sorted({m for m, _ in groups})
    for ax, system in zip(axes[0], systems, strict=True):
        for (method, s), rs in groups.items():
            if s == system:
                draw(ax, rs, colors[methods.index(method) % len(colors)],
                     f"{method} (n={len(rs)})")
        ax.set_title(system)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot(runs: list[Run], path: Path, by: tuple[str, ...] = ()) -> None:
    """Accepted val score against system runs spent: seeds thin, mean by step bold."""
    def draw(ax, rs: list[Run], color: str, label: str) -> None:
        for r in rs:
            xs, ys = zip(*r.curve, strict=True)
            ax.step(xs, ys, where="post", color=color, alpha=0.3, linewidth=0.8)
        steps = min(len(r.curve) for r in rs)
        mean_x = [statistics.fmean(r.curve[i][0] for r in rs) for i in range(steps)]
        mean_y = [statistics.fmean(r.curve[i][1] for r in rs) for i in range(steps)]
        ax.step(mean_x, mean_y, where="post", color=color, linewidth=2, label=label)

    _per_system_figure(group([r for r in runs if r.curve], by), path, "(no history)",
                       ("system runs spent", "validation score (accepted system)"), draw)


def val_test_correlation(runs: list[Run]) -> list[str]:
    """Per system: Pearson's r between the final validation and test scores over its runs
    (does validation rank the systems as test does?), as markdown lines."""
    lines = []
    for system in sorted({r.system for r in runs}):
        pairs = [(r.val, r.test) for r in runs if r.system == system and r.val is not None]
        if len(pairs) < 3 or len({v for v, _ in pairs}) < 2 or len({t for _, t in pairs}) < 2:
            continue
        r = statistics.correlation([v for v, _ in pairs], [t for _, t in pairs])
        lines.append(f"- {system}: validation and test scores of the final systems correlate "
                     f"at r = {r:.2f} over {len(pairs)} runs.")
    return lines


def plot_cost(runs: list[Run], path: Path, by: tuple[str, ...] = ()) -> None:
    """Test score against tokens per test question of each final system: a point per seed,
    the method's mean larger (a method that matches a larger model at fewer tokens shows)."""
    def draw(ax, rs: list[Run], color: str, label: str) -> None:
        xs = [r.inference["tokens_per_question"] for r in rs]
        ax.scatter(xs, [r.test for r in rs], color=color, alpha=0.35, s=14)
        ax.scatter([statistics.fmean(xs)], [statistics.fmean(r.test for r in rs)],
                   color=color, s=60, label=label)

    costed = group([r for r in runs if r.inference.get("tokens_per_question") is not None], by)
    _per_system_figure(costed, path, "(no inference cost recorded)",
                       ("LM tokens per test question (final system)", "test score"), draw)


def compare(paths: list[str | Path], out: str | Path | None = None,
            by: tuple[str, ...] = ()) -> tuple[list[dict[str, Any]], list[Path]]:
    """The table rows, and the run directories skipped for having no summary.json."""
    runs, skipped = [], []
    for p in find_runs(paths):
        r = load_run(p, by)
        if r is None:
            skipped.append(p)
        else:
            runs.append(r)
    rows = table(runs, by)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        pairs = versus.to_markdown(versus.versus(group(runs, by)))
        corr = val_test_correlation(runs)
        (out / "compare.md").write_text(to_markdown(rows) + per_seed_markdown(group(runs, by))
                                        + ("\n" + pairs if pairs else "")
                                        + ("\n" + "\n".join(corr) + "\n" if corr else ""),
                                        encoding="utf-8")
        write_csv(rows, out / "compare.csv")
        plot(runs, out / "compare.png", by)
        plot_cost(runs, out / "cost.png", by)
    return rows, skipped


# ------------------------------------------------------------------ the command


DIRS = typer.Argument(..., help="Run directories, or folders holding them "
                                 "(a multirun sweep, runs/<system>/)")
OUT = typer.Option(None, "--out", "-o", help="Write compare.md, compare.csv and compare.png here")
BY = typer.Option([], "--by", help="Also group by this config key, e.g. --by lm.model "
                                   "(repeatable)")


def register(app: typer.Typer) -> None:
    """Add `optimas compare` to the typer app."""

    @app.command(name="compare")
    def compare_command(dirs: list[str] = DIRS, out: str | None = OUT, by: list[str] = BY):
        """Compare methods over seeds: test score mean ± std, system runs, LM calls, wall time.

        Examples: `optimas compare runs/hotpotqa/<stamp>_multirun --out reports/`;
        `optimas compare runs/hotpotqa --by lm.model`
        """
        from optimas_cli.console import make_console

        console, err = make_console(), make_console(stderr=True)
        try:
            rows, skipped = compare(dirs, out, tuple(by))
        except FileNotFoundError as e:
            err.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
            raise typer.Exit(2) from None
        for p in skipped:
            err.print(f"[yellow]skipped[/] {p}: no summary.json (unfinished, or not a run)")
        if not rows:
            err.print("[red]error:[/] no finished runs (with summary.json) found")
            raise typer.Exit(1)
        console.print(rich_table(rows))
        if out is not None:
            err.print(f"wrote {Path(out) / 'compare.md'}, compare.csv, compare.png")
