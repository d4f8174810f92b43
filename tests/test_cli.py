"""The command line: help of every command, validate's errors, evaluate, show, multirun."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from optimas_cli import runtime
from optimas_cli.cli import app
from optimas_cli.config import PROJECT_CONFIGS

runner = CliRunner()
HOTPOT = str(PROJECT_CONFIGS / "hotpotqa.yaml")
COMMANDS = ["run", "evaluate", "validate", "show", "collect", "fit", "update", "compare"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_validate_ok_prints_the_graph_order(seed_data):
    result = runner.invoke(app, ["validate", HOTPOT])
    assert result.exit_code == 0, result.output
    assert "question_rewriter -> info_extractor -> retriever -> hint_generator -> answer_generator" \
        in " ".join(result.output.split())


def _bad_system(write_yaml, components: str):
    return write_yaml("bad.yaml", f"""defaults:
  - lm: smollm2
  - _self_
name: bad
system:
  name: bad
  inputs: [question]
  final_output: answer
  loader: systems.hotpotqa:load
  metric: systems.hotpotqa:metric
  components:
{components}
""")


CYCLE = """    a: {kind: python, description: a, inputs: [y], outputs: [x], params: {function: "fns:shout"}}
    b: {kind: python, description: b, inputs: [x], outputs: [y], params: {function: "fns:shout"}}
    c: {kind: python, description: c, inputs: [question], outputs: [answer], params: {function: "fns:shout"}}"""
MISSING = """    a: {kind: python, description: a, inputs: [ghost], outputs: [answer], params: {function: "fns:shout"}}"""


@pytest.mark.parametrize("components,expected", [
    (CYCLE, "the components form a cycle"),
    (MISSING, "input 'ghost' of component 'a' is produced by no component"),
])
def test_validate_graph_errors_exit_nonzero(write_yaml, components, expected):
    path = _bad_system(write_yaml, components)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert expected in out and "error:" in out and "bad.yaml" in out


def test_error_message_is_never_hard_wrapped(write_yaml):
    """A long path must come out whole (copyable), whatever the terminal width."""
    path = _bad_system(write_yaml, MISSING)
    long = path.parent / ("a_rather_long_directory_name_" * 4) / "bad.yaml"
    long.parent.mkdir()
    long.write_text(path.read_text())
    result = runner.invoke(app, ["validate", str(long)], terminal_width=60)
    assert result.exit_code == 2
    assert str(long) in result.output


def test_validate_unknown_key_exits_nonzero():
    result = runner.invoke(app, ["validate", HOTPOT, "+eval.colour=blue"])
    assert result.exit_code == 2
    assert "unknown key 'eval.colour'" in " ".join(result.output.split())


def _script(request):
    block = request.prompt.split("\n\n")[-1]
    if block.endswith("Answer:"):
        return " ".join(block.split("Context:", 1)[1].split("\nHint:", 1)[0].split())
    return block.splitlines()[0].split(":", 1)[1]


def test_evaluate_then_show(tmp_path, monkeypatch, scripted_lm, hotpot_path):
    monkeypatch.setattr(runtime, "make_lm", lambda c: scripted_lm(_script))
    result = runner.invoke(app, ["evaluate", HOTPOT, f"run_root={tmp_path}", "data.test_size=3", "-q"])
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "hotpotqa").iterdir())
    assert f"run directory: {run_dir}" in result.output.replace("\n", "")
    shown = runner.invoke(app, ["show", str(run_dir)])
    assert shown.exit_code == 0 and "DONE" in shown.output and "test: score" in shown.output
    assert runner.invoke(app, ["show", str(tmp_path)]).exit_code == 2


def test_multirun_basic_launcher_makes_one_run_dir_per_combination(tmp_path, monkeypatch,
                                                                   scripted_lm, hotpot_path):
    monkeypatch.setattr(runtime, "make_lm", lambda c: scripted_lm(_script))
    result = runner.invoke(app, ["evaluate", HOTPOT, "--multirun", f"run_root={tmp_path}",
                                 "data.test_size=4",
                                 "system.components.retriever.variables.k.value=1,25"])
    assert result.exit_code == 0, result.output
    sweep = next((tmp_path / "hotpotqa").iterdir())
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    metrics = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    ks = [(j / "overrides.txt").read_text() for j in jobs]
    assert "k.value=1" in ks[0] and "k.value=25" in ks[1]
    assert all((j / "DONE").exists() for j in jobs)
    assert metrics[0]["mean"] != metrics[1]["mean"]


def test_multirun_validates_every_combination_before_any_work(tmp_path, seed_data):
    result = runner.invoke(app, ["evaluate", HOTPOT, "--multirun", f"run_root={tmp_path}",
                                 "system.components.retriever.variables.k.value=1,3"])
    assert result.exit_code == 2 and "not among choices" in " ".join(result.output.split())
    assert not (tmp_path / "hotpotqa").exists()
