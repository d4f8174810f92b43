"""What each iteration of a run did, one row per component step of history.jsonl: why the
component was picked, the pairs its local reward learned from and how well that reward
ranked held-out pairs, what the update changed, and the validation decision.

`optimas show RUN` prints it; `optimas show RUN --markdown` writes it as a table for a
report. It is where a run that ended on its initial system says why (which component,
which variable, how aligned its local reward was).
"""

from __future__ import annotations

from typing import Any

from optimas_cli.history import steps_of

HEADERS = ("iter", "component", "picked because", "pairs", "LRF held-out", "changed",
           "validation", "paired diff [CI]", "decision", "runs")


def _short(value: Any, width: int = 48) -> str:
    """A variable's value in a few words: models without their prefix, a prompt as its
    instruction's start and demo count, a per-input policy as its choices."""
    if isinstance(value, dict) and value.get("mode") == "per_input":
        return "per input: " + "/".join(_short(c, 20) for c in value.get("choices", []))
    if isinstance(value, dict) and "instruction" in value:
        text = " ".join(str(value["instruction"]).split())
        text = text if len(text) <= width else text[:width - 1] + "…"
        return f'"{text}" + {len(value.get("demos") or [])} demos'
    text = str(value).removeprefix("local/")
    return text if len(text) <= width else text[:width - 1] + "…"


def changes(step: dict[str, Any], before: dict[str, Any] | None = None) -> list[str]:
    """"variable: old → new" for each variable whose update chose another value than the
    current one (the first candidate of every variable's search). A baseline's step names
    the values it tried in "candidate" ({component: {variable: value}}); their old values
    are those of `before`, the state the step started from."""
    if "candidate" in step:
        return [f"{comp}.{var}: {_short((before or {}).get(comp, {}).get(var, '?'))} → "
                f"{_short(value)}"
                for comp, values in (step["candidate"] or {}).items()
                for var, value in values.items()]
    out = []
    for var in (step.get("update") or {}).get("variables", []):
        cands = var.get("candidates") or []
        if cands and var.get("best") != cands[0].get("value"):
            out.append(f"{var['variable']}: {_short(cands[0].get('value'))} → "
                       f"{_short(var.get('best'))}")
    return out


def _lrf(step: dict[str, Any]) -> str:
    m = step.get("lrf")
    if not m or m.get("pairwise_accuracy") is None:
        return "-"
    verdict = "beats chance" if m.get("beats_chance") else "not above chance"
    text = f"{m['pairwise_accuracy']:.2f} on {m.get('n_pairs', '?')} ({verdict})"
    own = m.get("sampled")
    if "sampled" in m and (own or {}).get("n_pairs") != m.get("n_pairs"):  # gold pairs among them
        text += (f"; own outputs {own['pairwise_accuracy']:.2f} on {own['n_pairs']}" if own
                 else "; no pair of its own outputs")
    trust = m.get("trust")
    if trust is not None:  # rewards/trust.py: whether the loop let this head decide anything
        text += "; trusted" if trust.get("trusted") else "; not trusted"
    return text


def _decision(record: dict[str, Any]) -> tuple[str, str, str]:
    """(validation before → after, paired difference with its interval, the decision)."""
    if "val_after" not in record:
        return f"{record.get('val_before', float('nan')):.3f}", "-", "nothing to validate"
    val = f"{record['val_before']:.3f} → {record['val_after']:.3f}"
    paired = (record.get("decision") or {}).get("paired")
    diff = (f"{paired['mean']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]"
            if paired else "-")
    if not record.get("changed", True):
        verdict = "no change"
    else:
        verdict = "accepted" if record.get("accepted") else "kept the incumbent"
        if "validation_of" in record:
            verdict += f" (validated at iteration {record['validation_of']}, not run again)"
    return val, diff, verdict


def rows(history: list[dict[str, Any]]) -> list[list[str]]:
    """One row per step; the iteration's validation columns on its last step's row."""
    out = []
    before: dict[str, Any] | None = None  # the state each record started from
    for record in history:
        steps = steps_of(record)
        for i, step in enumerate(steps):
            done = [] if step.get("skipped") else changes(step, before)
            what = "; ".join(done) if done else (f"skipped: {step['skipped']}"
                                                 if step.get("skipped") else "nothing")
            last = i == len(steps) - 1
            val, diff, verdict = _decision(record) if last else ("", "", "")
            out.append([str(record.get("iteration", "")) if i == 0 else "",
                        step.get("component", "?"), str(step.get("reason", "-")),
                        str(step.get("pairs", "-")), _lrf(step), what, val, diff, verdict,
                        str(record.get("system_runs", "")) if last else ""])
        before = record.get("state", before)
    return out


def to_markdown(history: list[dict[str, Any]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows(history)]
    return "\n".join(lines) + "\n"


def rich_table(history: list[dict[str, Any]]):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="iterations: one row per component step (history.jsonl)")
    for h in HEADERS:
        t.add_column(h, overflow="fold")
    for row in rows(history):
        t.add_row(*(escape(c) for c in row))
    return t
