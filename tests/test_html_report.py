"""`optimas report`: one self-contained HTML file per run directory or folder of runs, with the
numbers `optimas show` and `optimas compare` print, rendered in a real headless Chromium
(Debian's package; the rendering test is skipped where it is not installed)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimas_cli import iterations
from optimas_cli.cli import app
from optimas_cli.compare import compare
from optimas_cli.compare_tables import display_cells
from optimas_cli.reports import outcome_lines
from optimas_cli.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[1]
LADDER = ROOT / "bench" / "results" / "hotpotqa_ladder" / "runs"  # archived, committed runs
RUN = LADDER / "optimas" / "seed_0"


def report(path: Path, out: Path) -> str:
    r = CliRunner().invoke(app, ["report", str(path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out.read_text()


def text_of(page: str) -> str:
    """The page's text as a reader sees it (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page.split("<body>", 1)[1]))


def squash(s: str) -> str:
    return " ".join(s.split())


def test_a_run_report_shows_the_numbers_show_prints(tmp_path):
    page = report(RUN, tmp_path / "run.html")
    shown = squash(text_of(page))
    rd = RunDir(RUN)
    summary, history = rd.read_json("summary.json"), rd.read_jsonl("history.jsonl")
    for label, line in outcome_lines(summary, history):  # show's lines, word for word
        assert squash(f"{label} {line}") in shown, label
    for row in iterations.rows(history):  # show's iteration table, cell for cell
        for cell in row:
            assert squash(cell) in shown, cell
    assert "answer_generator 0.125 8 0.996 no" in shown  # the local reward's alignment
    scores = summary["test"]
    assert shown.count(" +1.000") == sum(  # test per question: the four fixed questions
        1 for a, b in zip(scores["final"]["scores"], scores["initial"]["scores"], strict=True)
        if a - b == 1)
    assert "<svg" in page and "system runs spent" in page  # validation against spend
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # self-contained


def test_a_folder_report_shows_the_rows_compare_prints(tmp_path):
    page = report(LADDER, tmp_path / "compare.html")
    shown = squash(text_of(page))
    rows, _ = compare([LADDER])
    for row in rows:
        assert squash(" ".join(display_cells(row))) in shown, row["method"]
    assert "optimas − search hotpotqa 0, 1, 2 100 -0.0011 [-0.0454, +0.0449] 22 / 29" in shown


def test_a_path_that_holds_no_run_is_an_error(tmp_path):
    r = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "no finished run" in r.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("path", [RUN, LADDER], ids=["run", "folder"])
def test_the_report_renders_in_headless_chromium(path, tmp_path):
    out = tmp_path / "report.html"
    report(path, out)
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "shot.png"
    r = subprocess.run([*base, f"--screenshot={shot}", "--window-size=1400,1600", out.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000, r.stderr[-2000:]
    console = [x for x in r.stderr.splitlines() if "CONSOLE" in x or "Uncaught" in x]
    assert not console, console  # the page logged no error
    from PIL import Image

    with Image.open(shot) as im:  # drawn: many colours, not a blank or an error page
        assert im.size == (1400, 1600) and len(set(im.convert("RGB").getdata())) > 50
    dom = subprocess.run([*base, "--dump-dom", out.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("<table") >= 2 and dom.count("<svg") >= 1
