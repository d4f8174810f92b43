"""`optimas report RUN_DIR|DIR`: one self-contained HTML file to look at (no script, no
network: the charts are inline SVG, the styles inline).

For a run directory: its status and outcome (the lines of `optimas show`), validation
against system runs spent, what each iteration changed with its paired interval (the rows
of `optimas show`), the local rewards' held-out alignment per component, and the test
score per question before and after. For a folder of runs (a sweep, runs/<system>/): the
methods side by side with their intervals (the rows of `optimas compare`), the pairwise
method differences, and a chart of each method's test score with its interval.

Every number comes from the functions `show` and `compare` print from, so the three agree.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

import yaml

from optimas_cli import iterations, layout, versus
from optimas_cli.compare import find_runs, group, load_run, table
from optimas_cli.compare_tables import HEADERS as COMPARE_HEADERS
from optimas_cli.compare_tables import display_cells as compare_cells
from optimas_cli.reports import failed_line, outcome_lines
from optimas_cli.run_dir import RunDir

REPORT = "report.html"
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.DONE{color:#080}.FAILED{color:#b00}.STOPPED{color:#b70}.up{color:#080}.down{color:#b00}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{font-weight:bold}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _table(headers: list[str] | tuple[str, ...], rows: list[list[str]], numeric_from: int = 99) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f"<td{' class=num' if i >= numeric_from else ''}>{_e(c)}</td>" for i, c in enumerate(r))
        + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_tables(text: str) -> str:
    """Markdown as `optimas compare` writes it: its pipe tables as tables, other lines as
    paragraphs."""
    out, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            if not set(line.strip()) <= set("|-: "):  # not the alignment row
                rows.append([c.strip().replace("\\|", "|")
                             for c in line.strip().strip("|").split(" | ")])
            continue
        if rows:
            out.append(_table(rows[0], rows[1:], numeric_from=2))
            rows = []
        if line.strip():
            out.append(f"<p>{_e(line)}</p>")
    return "".join(out)


def _svg(fig) -> str:
    """A matplotlib figure as inline SVG (closed after)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float = 7, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def validation_chart(history: list[dict[str, Any]]) -> str:
    """The accepted system's validation score against system runs spent; each candidate
    validated as a dot (filled: accepted)."""
    fig, ax = _figure()
    xs, ys = [], []
    for h in history:
        runs = h.get("system_runs") or 0
        if h.get("kind") == "initial":
            xs.append(runs)
            ys.append(h["val"]["mean"])
            continue
        accepted = bool(h.get("accepted"))
        ys.append(h["val_after"] if accepted else h["val_before"])
        xs.append(runs)
        if h.get("changed", True) and "val_after" in h:
            ax.plot(runs, h["val_after"], "o", color="tab:green" if accepted else "tab:gray",
                    fillstyle="full" if accepted else "none")
    ax.step(xs, ys, where="post", color="tab:blue", label="accepted system")
    ax.set_xlabel("system runs spent")
    ax.set_ylabel("validation score")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _svg(fig)


def alignment_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The local rewards' held-out alignment per component (summary.json lrf_heldout)."""
    out = []
    for comp, m in sorted((summary.get("lrf_heldout") or {}).items()):
        if not m:
            continue
        trust = (m.get("trust") or {}).get("trusted")
        out.append([comp, f"{m.get('pairwise_accuracy', float('nan')):.3f}",
                    str(m.get("n_pairs", "-")), f"{m.get('p_value', float('nan')):.3f}",
                    "yes" if m.get("beats_chance") else "no",
                    "-" if trust is None else ("yes" if trust else "no")])
    return out


def question_rows(rd: RunDir, summary: dict[str, Any]) -> list[list[str]]:
    """Test score per question, initial and final, the changed ones first."""
    test = summary.get("test") or {}
    before, after = (test.get(w, {}).get("scores") for w in ("initial", "final"))
    if before is None or after is None:
        return []
    ids = [str(i) for i in range(len(after))]
    preds = rd.path / layout.final_test_predictions("final")
    if preds.exists():
        found = [json.loads(x).get("id") for x in preds.read_text().splitlines() if x.strip()]
        if len(found) == len(after):
            ids = [str(i) for i in found]
    rows = sorted(zip(ids, before, after, strict=True), key=lambda r: -abs(r[2] - r[1]))
    return [[q, f"{b:.3f}", f"{a:.3f}", f"{a - b:+.3f}"] for q, b, a in rows]


def run_report(path: Path) -> str:
    rd = RunDir(path)
    if not (path / layout.CONFIG).exists():
        raise FileNotFoundError(f"{path} is not a run directory (no {layout.CONFIG})")
    cfg = yaml.safe_load((path / layout.CONFIG).read_text()) or {}
    status = rd.status()
    summary = rd.read_json(layout.SUMMARY) if (path / layout.SUMMARY).exists() else {}
    history = rd.read_jsonl(layout.HISTORY) if (path / layout.HISTORY).exists() else []
    method = summary.get("optimizer") or (cfg.get("optimizer") or {}).get("name", "?")
    parts = [f"<h1>{_e(path)}</h1><p>status: <b class={_e(status)}>{_e(status)}</b> · method: "
             f"{_e(method)} · system: {_e((cfg.get('system') or {}).get('name', '?'))} · lm: "
             f"{_e((cfg.get('lm') or {}).get('model', '?'))}</p>"]
    if status == layout.FAILED:
        parts.append(f"<p class=FAILED>error: {_e(failed_line(rd))}</p>")
    if summary:
        parts.append("<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>"
                                      for k, v in outcome_lines(summary, history)) + "</dl>")
    if history:
        parts += ["<h2>Validation against system runs spent</h2>", validation_chart(history)]
    if any(h.get("kind") == "iteration" for h in history):
        parts += ["<h2>What each iteration changed</h2>",
                  _table(iterations.HEADERS, iterations.rows(history))]
    if alignment := alignment_rows(summary):
        parts += ["<h2>Local rewards: held-out alignment per component</h2>",
                  _table(["component", "pairwise accuracy", "pairs", "p vs chance",
                          "beats chance", "trusted"], alignment, numeric_from=1)]
    if questions := question_rows(rd, summary):
        parts += ["<h2>Test per question, before and after</h2>",
                  _table(["question", "initial", "final", "difference"], questions, 1)]
    return _page(f"optimas report: {path.name}", parts)


def compare_chart(rows: list[dict[str, Any]]) -> str:
    """Each method's final − initial test difference with its interval."""
    fig, ax = _figure(7, 0.5 + 0.45 * len(rows))
    labels = [f"{r['method']} ({r['system']})" for r in rows]
    for i, r in enumerate(rows):
        if r.get("diff_mean") is not None:
            ax.errorbar(r["diff_mean"], i, xerr=[[r["diff_mean"] - r["diff_low"]],
                                                 [r["diff_high"] - r["diff_mean"]]], fmt="o",
                        color="tab:blue", capsize=3)
    ax.axvline(0, color="gray", lw=1)
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel("test: final − initial, paired, with its 95% interval")
    ax.grid(alpha=0.3, axis="x")
    return _svg(fig)


def compare_report(path: Path) -> str:
    runs = [r for p in find_runs([path]) if (r := load_run(p)) is not None]
    if not runs:
        raise FileNotFoundError(f"{path}: no finished run (with summary.json) under it")
    rows = table(runs)
    parts = [f"<h1>{_e(path)}</h1><p>{len(runs)} finished runs</p>",
             "<h2>Methods side by side</h2>",
             _table(COMPARE_HEADERS, [compare_cells(r) for r in rows], numeric_from=3),
             compare_chart(rows)]
    pairs = versus.versus(group(runs))
    if pairs:
        parts += ["<h2>Pairwise method differences</h2>", markdown_tables(versus.to_markdown(pairs))]
    return _page(f"optimas report: {path.name}", parts)


def _page(title: str, parts: list[str]) -> str:
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """The report of a run directory, or of the runs under a folder; written to `out`
    (default: report.html in `path`)."""
    path = Path(path)
    text = run_report(path) if (path / layout.CONFIG).exists() else compare_report(path)
    target = Path(out) if out else path / REPORT
    target.write_text(text, encoding="utf-8")
    return target


def register(app) -> None:
    """Add `optimas report` to the typer app."""
    import typer

    @app.command(name="report")
    def report_command(path: str = typer.Argument(..., help="A run directory, or a folder of "
                                                  "runs (a sweep, runs/<system>/)"),
                       out: str | None = typer.Option(None, "--out", "-o", help="The HTML file "
                                                      "(default: PATH/report.html)")):
        """Write one self-contained HTML report: a run's validation against spend, what each
        iteration changed, the local rewards' alignment and the test per question; or, for a
        folder of runs, the methods side by side with their intervals.

        Examples: `optimas report runs/hotpotqa/<stamp>`; `optimas report runs/hotpotqa/<stamp>_multirun -o sweep.html`
        """
        from rich.markup import escape

        from optimas_cli.console import make_console

        try:
            target = write_report(path, out)
        except FileNotFoundError as e:
            make_console(stderr=True).print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
            raise typer.Exit(2) from None
        make_console(stderr=True).print(f"wrote {escape(str(target))}", soft_wrap=True)
