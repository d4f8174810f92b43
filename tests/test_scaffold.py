"""`optimas init`: the starter it writes, and the README's "Your own system" section,
followed literally (its bash block run as written, its YAML validated)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optimas_cli.scaffold import write_starter

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: `optimas` as a user runs it
SECTION = "## Your own system"


def section_blocks(language: str) -> list[str]:
    """The ```language blocks of README.md's "Your own system" section, in order."""
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"^```{language}\n(.*?)^```", body, flags=re.MULTILINE | re.DOTALL)


def optimas(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPTIMAS_CACHE_DIR=str(cache), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([str(BIN / "optimas"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"starter_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_writes_a_starter_that_validates_and_refuses_to_overwrite(tmp_path, isolated_cache):
    made = optimas("init", "mysys", "--dir", "out", cwd=tmp_path, cache=isolated_cache)
    assert made.returncode == 0, made.stderr
    root = tmp_path / "out" / "mysys"
    assert sorted(p.name for p in root.iterdir()) == ["capitals.jsonl", "mysys.py", "mysys.yaml"]
    rows = [json.loads(line) for line in (root / "capitals.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and all(set(r) == {"id", "country", "capital"} for r in rows)
    config = (root / "mysys.yaml").read_text()
    assert "defaults:" in config and "loader: optimas_cli.loaders.jsonl" in config

    # the starter's own code: the component's function and the metric
    mod = load_module(root / "mysys.py")
    assert mod.normalize("The capital of Kenya is Nairobi.") == {"answer": "Nairobi"}
    assert mod.normalize("Nairobi, Kenya\nCountry: Peru") == {"answer": "Nairobi"}
    from optimas_cli.api import Example

    brazil = Example(id="br", inputs={"country": "Brazil"}, target={"capital": "Brasília"})
    assert mod.exact_capital(brazil, {"answer": "brasilia"})["score"] == 1.0
    assert mod.exact_capital(brazil, {"answer": "Rio de Janeiro"})["score"] == 0.0

    # validate imports mysys.py from the working directory (the console script, not python -m)
    ok = optimas("validate", "mysys.yaml", cwd=root, cache=isolated_cache)
    assert ok.returncode == 0, ok.stderr
    assert "answerer -> normalizer" in ok.stdout + ok.stderr

    # the README's minimal config is complete: it validates beside the starter's code and data
    (minimal,) = section_blocks("yaml")
    (root / "minimal.yaml").write_text(minimal)
    ok = optimas("validate", "minimal.yaml", "lm=qwen05", "optimizer=none", cwd=root,
                 cache=isolated_cache)
    assert ok.returncode == 0, ok.stderr

    before = (root / "mysys.yaml").read_text()
    (root / "mysys.yaml").write_text(before + "# edited\n")
    again = optimas("init", "mysys", "--dir", "out", cwd=tmp_path, cache=isolated_cache)
    assert again.returncode != 0
    err = again.stderr.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err and "mysys" in err
    assert (root / "mysys.yaml").read_text().endswith("# edited\n")  # left as it was


@pytest.mark.parametrize(("name", "why"), [
    ("json", "already an importable module"),       # json.py would shadow the stdlib's
    ("my-sys", "must be a Python identifier"),
    ("class", "must be a Python identifier"),
])
def test_init_refuses_a_name_that_cannot_be_the_module(tmp_path, name, why):
    with pytest.raises(ValueError, match=why):
        write_starter(name, tmp_path)
    assert not (tmp_path / name).exists()


@pytest.mark.slow
def test_readme_section_followed_literally(tmp_path, isolated_cache):
    """The section's bash block(s), run as written from an empty folder with a fresh LM
    cache: init, validate, evaluate, run, show, compare."""
    script = "\n".join(section_blocks("bash"))
    assert "optimas init" in script and "optimas run" in script
    env = dict(os.environ, OPTIMAS_CACHE_DIR=str(isolated_cache),
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    start = time.monotonic()
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1200)
    wall = time.monotonic() - start
    print(f"README 'Your own system' block: {wall:.0f} s")
    assert done.returncode == 0, done.stderr[-3000:]

    runs = [p.parent for p in tmp_path.rglob("runs/**/summary.json")]
    assert runs, f"no run with a summary.json under {tmp_path}"
    methods = set()
    for run in runs:
        assert (run / "DONE").exists(), run
        summary = json.loads((run / "summary.json").read_text())
        assert isinstance(summary["test"]["final"]["mean"], float)
        assert isinstance(summary["test"]["initial"]["mean"], float)
        history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
        assert any(h["kind"] == "iteration" for h in history), run
        methods.add(summary["optimizer"])
    assert "optimas" in methods
    # compare printed a row per method run
    assert all(m in done.stdout for m in methods)
