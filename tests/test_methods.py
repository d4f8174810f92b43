"""The method protocol: every method within one Budget, and commands a method lacks refused."""

from __future__ import annotations

import pytest
from test_dspy import UPPER, shout_config, shout_script
from typer.testing import CliRunner

from optimas_cli.budget import Budget
from optimas_cli.cli import app
from optimas_cli.methods import METHODS, method_class, run_method
from optimas_cli.run_dir import RunDir
from optimas_cli.runtime import build_runtime

pytestmark = pytest.mark.filterwarnings("ignore:Implementing custom LMs:DeprecationWarning")

SMOL, GEMMA = "local/smollm2-135m-instruct", "local/gemma3-270m"
# the shout system with a model variable too, so that every method has something to change
MODEL_VAR = (f"+system.components.shout.variables.model={{type: model, value: {SMOL}, "
             f"choices: [{SMOL}, {GEMMA}]}}")
# TextGrad's optimizer must answer in its tags; the other proposers read the instruction
PROPOSAL = f"<IMPROVED_VARIABLE>{UPPER}</IMPROVED_VARIABLE>"
# a few runs: one validation is 4; DSPy's optimizers need room for their bootstrap and trials
BUDGETS = {"none": 6, "optimas": 12, "search": 9, "llmselector": 9, "textgrad": 12,
           "mipro": 40, "gepa": 40}
OPTIONS = {"mipro": ["optimizer.options.num_candidates=2", "optimizer.options.max_candidates=1"],
           "gepa": ["optimizer.options.max_candidates=1"],
           "textgrad": ["optimizer.options.steps=1", "optimizer.options.batch_size=2"],
           "optimas": ["optimizer.num_iterations=2", "optimizer.collect.num_inputs=2",
                       "optimizer.update.num_candidates=1", "optimizer.min_pairs=1"]}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_spends_within_its_budget_through_the_one_budget(
        tmp_path, scripted_lm, monkeypatch, method):
    over = []
    real = Budget.record_system_run

    def guarded(self):  # every system run any method spends is recorded here, DSPy's too
        if self.limit is not None and self.system_runs >= self.limit:
            over.append(self.system_runs + 1)
        real(self)

    monkeypatch.setattr(Budget, "record_system_run", guarded)
    budget = BUDGETS[method]
    composed = shout_config(tmp_path, method, MODEL_VAR, f"optimizer.budget_system_runs={budget}",
                            *OPTIONS.get(method, []))
    rt = build_runtime(composed, lm=scripted_lm(shout_script(PROPOSAL)))
    assert rt.budget.limit == budget and rt.system.budget is rt.budget
    run_dir = RunDir.create(composed)
    run_method(rt, run_dir)
    assert over == []
    assert 0 < rt.budget.system_runs <= budget
    history = run_dir.read_jsonl("history.jsonl")
    assert history and all(r["system_runs"] <= budget for r in history)


def test_the_optimas_update_step_counts_component_calls_beside_system_runs(tmp_path, scripted_lm):
    composed = shout_config(tmp_path, "optimas", MODEL_VAR, "optimizer.budget_system_runs=30",
                            *OPTIONS["optimas"])
    rt = build_runtime(composed, lm=scripted_lm(shout_script(PROPOSAL)))
    run_dir = RunDir.create(composed)
    run_method(rt, run_dir)
    history = run_dir.read_jsonl("history.jsonl")
    assert [h["kind"] for h in history][:2] == ["initial", "iteration"]
    assert history[-1]["component_calls"] == rt.budget.component_calls > 0
    assert history[-1]["system_runs"] == rt.budget.system_runs


@pytest.mark.parametrize("method,command", [("search", "collect"), ("none", "fit"),
                                            ("mipro", "collect"), ("llmselector", "fit")])
def test_a_command_the_method_lacks_fails_in_one_line_before_any_run_directory(
        tmp_path, method, command):
    config = shout_config(tmp_path, method).path
    result = CliRunner().invoke(app, [command, str(config), f"optimizer={method}",
                                      f"run_root={tmp_path / 'runs'}"])
    assert result.exit_code == 2
    supported = ", ".join((*method_class(method).commands, "evaluate"))
    assert result.output.strip() == (f"error: optimizer={method}: the '{method}' method supports "
                                     f"{supported}; not {command}")
    assert not (tmp_path / "runs").exists()


def test_a_third_party_method_is_named_by_dotted_path(tmp_path, scripted_lm):
    composed = shout_config(tmp_path, "none", "optimizer.name=test_methods.KeepMethod")
    rt = build_runtime(composed, lm=scripted_lm(shout_script()))
    assert run_method(rt, RunDir.create(composed)) == {"kept": True}


from optimas_cli.methods.base import Method  # noqa: E402  (the third-party method below)


class KeepMethod(Method):
    name = "keep"

    def optimize(self, ctx):
        return {"kept": True}


