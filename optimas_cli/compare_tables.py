"""`optimas compare`'s tables, from the rows of compare.table: compare.md (markdown, with its
note on what each column is), compare.csv, and the console's table, which shows the same
paired interval to the initial system as compare.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rich.markup import escape

COLUMNS = ("method", "system", "seeds", "test_mean", "test_std", "initial_mean", "initial_std",
           "diff_mean", "diff_low", "diff_high", "diff_n", "diff_sign_p", "system_runs",
           "component_calls", "lm_calls", "lm_requests", "lm_tokens", "wall_time_s", "cpu_s",
           "tokens_per_question", "lm_seconds_per_question", "replayed", "test_metrics", "runs")


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def display_cells(row: dict[str, Any]) -> list[str]:
    return [row["method"], row["system"], str(row["seeds"]),
            f"{_fmt(row['test_mean'])} ± {_fmt(row['test_std'])}",
            f"{_fmt(row['initial_mean'])} ± {_fmt(row['initial_std'])}",
            _interval(row, 4),
            _fmt(row["system_runs"], 1), _fmt(row["component_calls"], 1), _fmt(row["lm_calls"], 1)
            + _replayed(row), _fmt(row["lm_requests"], 1), _fmt(row["lm_tokens"], 0) + _replayed(row),
            _fmt(row["wall_time_s"], 1) + _replayed(row), _fmt(row.get("cpu_s"), 0),
            _fmt(row.get("tokens_per_question"), 0), _fmt(row.get("lm_seconds_per_question"), 2)]


def _replayed(row: dict[str, Any]) -> str:
    return f" (replay: {row['replayed']} of {row['seeds']})" if row.get("replayed") else ""


HEADERS = ("method", "system", "seeds", "test (mean ± std)", "initial test",
           "final − initial [95% CI]", "system runs", "component calls", "LM calls",
           "LM requests", "LM tokens", "wall time s", "CPU s", "inference tokens / question",
           "inference LM s / question")


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) or "-"


def to_markdown(rows: list[dict[str, Any]]) -> str:
    extra = any(r["test_metrics"] for r in rows)  # a column only when a system reports any
    headers = HEADERS + (("final test metrics",) if extra else ())
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(HEADERS) - 2) + ["---"] * extra) + "|"]
    lines += ["| " + " | ".join(display_cells(r) + ([_metrics_text(r["test_metrics"])] if extra
                                               else [])) + " |" for r in rows]
    note = ("\nTest score: mean ± std (sample, n-1) over seeds of summary.json test.final.mean. "
            "final − initial: the paired difference to the unoptimized system per test "
            "question (seeds that share a split averaged per question; seeds on their own "
            "splits resampled split first, then question), with its 95% bootstrap interval "
            "and the sign test's p over questions; a gain is beyond noise only when the "
            "interval is above 0 and p < 0.05. LM tokens: prompt + completion tokens of real "
            "calls. Inference: the final system's prompt + completion tokens and LM seconds "
            "per test question (seconds measured on its real calls), mean over seeds. "
            "System runs, LM calls (real model calls) and LM requests (calls + cache hits): "
            "spent by the optimization (test evaluation excluded), mean over seeds. "
            "Wall time and CPU s (the run's process and its children): per run, mean over "
            "seeds."
            + (" (replay: k of n): k seeds made no model call, every LM request a cache hit "
               "of an earlier run of the same config, so their LM calls, tokens and wall time "
               "are a replay's, not the method's cost." if any(r.get("replayed") for r in rows)
               else "")
            + (" Final test metrics: the system's other metrics of the optimized system on "
               "test, mean over seeds (those equal to the score left out)." if extra else "")
            + "\n")
    return "\n".join(lines) + "\n" + note


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else json.dumps(r[k]) if isinstance(r[k], dict)
                            else r[k]) for k in COLUMNS})


RICH_HEADERS = ("method", "system", "seeds", "test", "± std", "initial",
                "final − initial [95% CI]", "runs", "LM calls", "wall s")


def _interval(row: dict[str, Any], digits: int = 3) -> str:
    """The paired difference to the initial system with its interval, or "-"."""
    if row.get("diff_mean") is None:
        return "-"
    p = f" p={row['diff_sign_p']:.2g}" if row.get("diff_sign_p") is not None else ""
    return (f"{row['diff_mean']:+.{digits}f} [{row['diff_low']:+.{digits}f}, "
            f"{row['diff_high']:+.{digits}f}]{p}")


def rich_table(rows: list[dict[str, Any]]):
    """The console's table: test over seeds, the paired difference to the initial system with
    its interval (as in compare.md), and the optimization's spend."""
    from rich.table import Table

    t = Table(title="test score over seeds; final − initial paired per question; system runs "
                    "and LM calls spent optimizing")
    for i, h in enumerate(RICH_HEADERS):
        t.add_column(h, justify="left" if i < 2 else "right", no_wrap=i >= 2, overflow="fold")
    for r in rows:
        t.add_row(escape(r["method"]), escape(r["system"]), str(r["seeds"]),
                  _fmt(r["test_mean"], 3), _fmt(r["test_std"], 3), _fmt(r["initial_mean"], 3),
                  _interval(r), _fmt(r["system_runs"], 0), _fmt(r["lm_calls"], 0),
                  _fmt(r["wall_time_s"], 0))
    return t


def per_seed_markdown(groups: dict[tuple[str, str], list[Any]]) -> str:
    """A row per (method, system), a column per seed: each run's final test score (and its
    initial one where the seeds drew their own splits, the initial systems differ)."""
    seeds = sorted({r.seed for rs in groups.values() for r in rs}, key=str)
    if len(seeds) < 2:
        return ""
    lines = ["| method | system | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---:|" * len(seeds)]
    for (method, system), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        by = {r.seed: r for r in rs}
        cells = [(f"{by[s].test:.4f}" + (f" (from {by[s].initial:.4f})"
                                         if by[s].initial is not None else "")
                  if s in by else "-") for s in seeds]
        lines.append(f"| {method} | {system} | " + " | ".join(cells) + " |")
    return ("\nPer seed: the final system's test score (the initial system's in brackets; "
            "seeds with their own split test other questions).\n\n" + "\n".join(lines) + "\n")

