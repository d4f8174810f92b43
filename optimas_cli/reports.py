"""Human-readable summaries of a run directory (`optimas show`, end of every command)."""

from __future__ import annotations

import json
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
    """Status, system, LM, scores and spend of one run directory."""
    rd = RunDir(Path(path))
    if not (rd.path / layout.CONFIG).exists():
        raise FileNotFoundError(f"{rd.path} is not a run directory (no {layout.CONFIG})")
    cfg = yaml.safe_load((rd.path / layout.CONFIG).read_text())
    console.print(f"[bold]{rd.path}[/]  status: [bold]{rd.status()}[/]")
    console.print(f"system: {cfg['system']['name']}   lm: {cfg['lm']['model']}")
    if (rd.path / layout.STOPPED).exists():
        console.print(f"[yellow]stopped:[/] {(rd.path / layout.STOPPED).read_text().strip()}")
    if (rd.path / layout.SUMMARY).exists():
        s = rd.read_json(layout.SUMMARY)
        console.print_json(json.dumps(_without_scores({k: v for k, v in s.items()
                                                       if k != "per_component"}), default=str))
    history = rd.read_jsonl(layout.HISTORY) if (rd.path / layout.HISTORY).exists() else []
    if any(h.get("kind") == "iteration" for h in history):
        console.print(iterations.rich_table(history))
    if (rd.path / layout.METRICS).exists():
        m = rd.read_json(layout.METRICS)
        if "mean" in m:
            line = (f"{m['split']}: score {m['mean']:.4f} ± {m['std']:.4f}  n={m['n']}  "
                    f"failed={m['failed']}  repeats={m.get('repeats', 1)}")
            extra = "  ".join(f"{k} {v['mean']:.4f}" for k, v in m.get("metrics", {}).items())
            console.print(line + ("  " + extra if extra else ""))
            console.print(f"wall time {m.get('wall_time_s', 0):.1f} s")
        if m.get("per_component"):
            console.print(_usage_table("LM usage per component", m["per_component"]))
        total = m.get("lm", {}).get("total")
        if total:
            console.print("LM total: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else
                                                    f"{k}={v}" for k, v in total.items()))
    print_failures(rd, console)


def iterations_markdown(path: str | Path) -> str:
    """The iterations table of a run directory as markdown (`optimas show --markdown`)."""
    history = Path(path) / layout.HISTORY
    if not history.exists():
        raise FileNotFoundError(f"{history} does not exist: not a run with a history")
    return iterations.to_markdown(RunDir(Path(path)).read_jsonl(layout.HISTORY))


def _without_scores(data):
    """`data` without its per-example score lists (summary.json holds one per test question;
    `optimas compare` and test/*.json have them)."""
    if isinstance(data, dict):
        return {k: _without_scores(v) for k, v in data.items() if k != "scores"}
    if isinstance(data, list):
        return [_without_scores(v) for v in data]
    return data


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
