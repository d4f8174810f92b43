"""Human-readable summaries of a run directory (`optimas show`, the end of every command);
`optimas show --json` prints summary.json itself (raw_summary)."""

from __future__ import annotations

from pathlib import Path

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from optimas_cli import failures, iterations, layout
from optimas_cli.run_dir import RunDir

SHOW_FAILURES = 3  # failures quoted in full; the rest are counted per stage


def _usage_table(title: str, per_component: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    for col in ("component", "LM calls", "cache hits", "prompt tok", "completion tok",
                "LM latency s", "cost $", "errors"):
        table.add_column(col, justify="left" if col == "component" else "right")
    for comp, u in per_component.items():
        table.add_row(comp, str(int(u.get("calls", 0))), str(int(u.get("cache_hits", 0))),
                      str(int(u.get("prompt_tokens", 0))), str(int(u.get("completion_tokens", 0))),
                      f"{u.get('latency_s', 0):.1f}", f"{u.get('cost_usd', 0):.4f}",
                      str(int(u.get("errors", 0))))
    return table


def print_summary(path: str | Path, console: Console) -> None:
    """A run directory for a person: status (a FAILED run's error first), method, system and
    LM; a run's validation and test before -> after with the paired interval, its spend and
    what each iteration did; an evaluation's score and LM usage; the failed examples."""
    rd = RunDir(Path(path))
    if not (rd.path / layout.CONFIG).exists():
        raise FileNotFoundError(f"{rd.path} is not a run directory (no {layout.CONFIG})")
    cfg = yaml.safe_load((rd.path / layout.CONFIG).read_text()) or {}
    status = rd.status()
    colour = {layout.DONE: "green", layout.FAILED: "red", layout.STOPPED: "yellow"}.get(status,
                                                                                       "bold")
    console.print(f"[bold]{escape(str(rd.path))}[/]  status: [bold {colour}]{status}[/]",
                  soft_wrap=True)
    if status == layout.FAILED:
        print_failed(rd, console)
    if (rd.path / layout.STOPPED).exists():
        console.print(f"[yellow]stopped:[/] {escape((rd.path / layout.STOPPED).read_text().strip())}",
                      soft_wrap=True)
    summary = rd.read_json(layout.SUMMARY) if (rd.path / layout.SUMMARY).exists() else None
    method = (summary or {}).get("optimizer") or (cfg.get("optimizer") or {}).get("name", "?")
    console.print(f"method: {escape(str(method))}   system: "
                  f"{escape(str((cfg.get('system') or {}).get('name', '?')))}   lm: "
                  f"{escape(str((cfg.get('lm') or {}).get('model', '?')))}", soft_wrap=True)
    history = rd.read_jsonl(layout.HISTORY) if (rd.path / layout.HISTORY).exists() else []
    if summary is not None:
        for label, text in outcome_lines(summary, history):
            console.print(f"[bold]{label:<10}[/]  {escape(text)}", soft_wrap=True)
    if any(h.get("kind") == "iteration" for h in history):
        console.print(iterations.rich_table(history))
    if (rd.path / layout.METRICS).exists():
        print_metrics(rd.read_json(layout.METRICS), console)
    print_failures(rd, console)


def failed_line(rd: RunDir) -> str:
    """What a FAILED run died of: FAILED's last line (a traceback's exception)."""
    lines = [x for x in (rd.path / layout.FAILED).read_text(encoding="utf-8").splitlines()
             if x.strip()]
    return lines[-1].strip() if lines else "(FAILED is empty)"


def print_failed(rd: RunDir, console: Console) -> None:
    """A FAILED run's error, and where its traceback is when FAILED holds one."""
    console.print(f"[bold red]error:[/] {escape(failed_line(rd))}", soft_wrap=True)
    if len((rd.path / layout.FAILED).read_text(encoding="utf-8").strip().splitlines()) > 1:
        console.print(f"  (in full: {escape(str(rd.path / layout.FAILED))})", soft_wrap=True)


def _paired(p: dict) -> str:
    return (f"{p['mean']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}], paired "
            f"{p.get('confidence', 0.95):.0%} interval over {p.get('n', '?')} questions "
            f"({p.get('wins', '?')} better, {p.get('losses', '?')} worse)")


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def outcome_lines(summary: dict, history: list[dict]) -> list[tuple[str, str]]:
    """summary.json as (label, text) lines: validation and test before → after, spend, wall
    time, the variables whose changes were accepted."""
    val, its = summary.get("val") or {}, summary.get("iterations") or []
    out = [("validation", f"{_score(val.get('initial'))} → {_score(val.get('final'))}   "
                          f"({summary.get('accepted', 0)} of {len(its)} iterations accepted)")]
    test = summary.get("test") or {}
    if "final" in test:
        before, after = test.get("initial", {}), test["final"]
        failed = sum(int(x.get("failed", 0) or 0) for x in (before, after))
        out.append(("test", f"{_score(before.get('mean'))} → {_score(after.get('mean'))}   "
                            + (_paired(summary["test_paired"]) if summary.get("test_paired")
                               else "(no per-question scores: no paired interval)")
                            + (f"; {failed} failed examples" if failed else "")))
    out.append(("spend", _spend(summary, history)))
    wall, rss = summary.get("wall_time_s"), summary.get("peak_rss_mb")
    out.append(("time", ("-" if wall is None else f"{wall:.1f} s wall")
                + (f", peak memory {rss:.0f} MB" if rss else "")))
    gains = summary.get("contributions") or {}
    if gains:
        out.append(("accepted", ", ".join(
            f"{var} {c.get('val_gain', 0):+.3f} (iteration "
            f"{', '.join(map(str, c.get('steps', [])))})" for var, c in gains.items())))
    return out


def _spend(summary: dict, history: list[dict]) -> str:
    # the optimization's system runs (test excluded) and the test's, apart (budget.py)
    runs, tests = summary.get("system_runs"), summary.get("test_system_runs")
    optimizing = history[-1].get("system_runs") if history else None
    if tests is None and runs is not None and optimizing is not None:  # an older summary.json
        runs, tests = optimizing, runs - optimizing  # counted the test runs in system_runs
    text = f"{runs} system runs" if runs is not None else "system runs: -"
    if tests is not None:
        text += f" + {tests} test system runs"
    lm = summary.get("lm") or {}
    text += (f", {summary.get('component_calls', 0)} component calls, "
             f"{summary.get('lm_calls', 0)} LM calls ({summary.get('lm_requests', 0)} requests, "
             f"cache hits included), {summary.get('lm_tokens', 0)} tokens")
    return text + (f", ${lm['cost_usd']:.4f}" if lm.get("cost_usd") else "")


def print_metrics(m: dict, console: Console) -> None:
    """An evaluation's metrics.json: its score and LM usage."""
    if "mean" in m:
        line = (f"{m['split']}: score {m['mean']:.4f} ± {m['std']:.4f}  n={m['n']}  "
                f"failed={m['failed']}  repeats={m.get('repeats', 1)}")
        extra = "  ".join(f"{k} {v['mean']:.4f}" for k, v in m.get("metrics", {}).items())
        console.print(line + ("  " + extra if extra else ""), markup=False)
        console.print(f"wall time {m.get('wall_time_s', 0):.1f} s")
    if m.get("per_component"):
        console.print(_usage_table("LM usage per component", m["per_component"]))
    total = m.get("lm", {}).get("total")
    if total:
        console.print("LM total: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else
                                                f"{k}={v}" for k, v in total.items()))


def raw_summary(path: str | Path) -> str:
    """summary.json as written (an `evaluate` run: metrics.json), for `show --json`."""
    if not (Path(path) / layout.CONFIG).exists():
        raise FileNotFoundError(f"{path} is not a run directory (no {layout.CONFIG})")
    for name in (layout.SUMMARY, layout.METRICS):
        if (Path(path) / name).is_file():
            return (Path(path) / name).read_text(encoding="utf-8")
    raise FileNotFoundError(f"{path} has no {layout.SUMMARY} or {layout.METRICS} (status: "
                            f"{RunDir(Path(path)).status()})")


def iterations_markdown(path: str | Path) -> str:
    """The iterations table of a run directory as markdown (`optimas show --markdown`)."""
    history = Path(path) / layout.HISTORY
    if not history.exists():
        raise FileNotFoundError(f"{history} does not exist: not a run with a history")
    return iterations.to_markdown(RunDir(Path(path)).read_jsonl(layout.HISTORY))


def print_failures(rd: RunDir, console: Console) -> None:
    """Failed examples of every stage (failures.jsonl): count per stage, the first few."""
    records = rd.read_jsonl(failures.FILE)
    if not records:
        return
    console.print(f"[yellow]failures:[/] {len(records)} (all in "
                  f"{escape(str(rd.path / failures.FILE))})",
                  soft_wrap=True)
    for (stage, label), n in failures.by_label(records).items():
        console.print(f"  {stage} {label}: {n}", soft_wrap=True, markup=False)
    for r in records[:SHOW_FAILURES]:
        console.print(f"  - {r.get('label')} example {r.get('example_id')} at "
                      f"{r.get('component')}: {r.get('error')}", soft_wrap=True, markup=False)
    misses = failures.replay_misses(records)
    if misses:
        console.print(f"  {len(misses)} of them are LM requests missing from the replayed cache",
                      markup=False)
