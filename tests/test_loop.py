"""The Optimas loop on a numeric system with a known optimum (factor=2), real local reward model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import fns
import pytest
import yaml
from typer.testing import CliRunner

from optimas_cli.cli import app
from optimas_cli.config import load
from optimas_cli.jobs import execute
from optimas_cli.methods.optimas import fit, loop
from optimas_cli.methods.optimas.pairs import pick_component
from optimas_cli.rewards import LocalRewardModel
from optimas_cli.run_dir import RunDir

LINEAR = Path(__file__).parent / "linear.yaml"


def run(tmp_path, *overrides):
    return execute("run", load(LINEAR, [f"run_root={tmp_path}", *overrides]), show_progress=False)


@pytest.mark.slow
def test_loop_finds_the_better_value_and_writes_every_artifact(tmp_path):
    path, summary = run(tmp_path)
    for name in ("config.yaml",
                 "rollouts/iter_001/scale.jsonl", "lrf/iter_001/metrics.json", "history.jsonl",
                 "final/system.yaml", "summary.json", "val_score.png", "test/initial.json",
                 "test/final.json", "DONE"):
        assert (path / name).exists(), name
    final = yaml.safe_load((path / "final/system.yaml").read_text())["state"]
    assert final == {"scale": {"factor": 2}}
    history = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]
    it = history[1]
    assert it["component"] == "scale" and it["accepted"] and it["val_after"] > it["val_before"]
    choice = it["update"]["variables"][0]
    assert choice["best"] == 2 and {c["value"] for c in choice["candidates"]} == {1, 2, 3}
    assert summary["test"]["final"]["mean"] == 1.0 and summary["test_improvement"] > 0
    lrf = summary["lrf_heldout"]["scale"]  # alignment of its fit, on pairs never trained on
    assert lrf["n_pairs"] >= 2 and 0 <= lrf["pairwise_accuracy"] <= 1 and "beats_chance" in lrf
    # `optimas show` tells what the iteration did: the change, its LRF and the decision
    table = CliRunner().invoke(app, ["show", "--markdown", str(path)])
    assert table.exit_code == 0, table.output
    row = next(line for line in table.output.splitlines() if line.startswith("| 1 | scale |"))
    assert "factor: 1 → 2" in row and "| accepted |" in row
    assert f"{lrf['pairwise_accuracy']:.2f} on {lrf['n_pairs']}" in row
    shown = CliRunner().invoke(app, ["show", str(path)])
    assert shown.exit_code == 0 and "iterations" in shown.output
    assert '"scores"' not in shown.output  # per-question lists stay in the files
    # the optimized state loads back into evaluate
    result = execute("evaluate", load(LINEAR, [f"run_root={tmp_path}",
                                               f"system_state={path}/final/system.yaml"]),
                     show_progress=False)[1]
    assert result["mean"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("proposed,accepted", [(2, True), (3, False)])
def test_change_is_accepted_only_if_validation_improves(tmp_path, monkeypatch, proposed, accepted):
    def fake_update(ctx, **k):
        return {"state": {"scale": {"factor": proposed}}, "variables": []}

    monkeypatch.setattr(loop, "update_component", fake_update)
    path, summary = run(tmp_path)
    history = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]
    assert history[1]["accepted"] is accepted
    final = yaml.safe_load((path / "final/system.yaml").read_text())["state"]["scale"]["factor"]
    assert final == (proposed if accepted else 1)  # factor 3 is no better than 1: reverted


@pytest.mark.slow
def test_a_rejected_proposal_made_again_is_not_validated_again(tmp_path, monkeypatch):
    """Iteration 2 proposes the state iteration 1 validated and rejected: it is decided on
    the scores already measured, and no validation run is paid twice."""
    def fake_update(ctx, **k):
        return {"state": {"scale": {"factor": 3}}, "variables": []}

    evaluations = []
    real = loop.evaluate_val
    monkeypatch.setattr(loop, "update_component", fake_update)
    monkeypatch.setattr(loop, "evaluate_val",
                        lambda rt, state, label: evaluations.append(label) or real(rt, state, label))
    path, _ = run(tmp_path, "optimizer.num_iterations=2")
    history = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]
    first, second = history[1], history[2]
    assert evaluations == ["val iter 1"]  # the initial validation is the history's own
    assert first["tried"] == second["tried"] == {"scale": {"factor": 3}}
    assert "validation_of" not in first and second["validation_of"] == 1
    assert second["scores_after"] == first["scores_after"] and not second["accepted"]
    table = CliRunner().invoke(app, ["show", "--markdown", str(path)])
    assert "validated at iteration 1, not run again" in table.output


@pytest.mark.slow
def test_a_choice_does_not_lead_back_to_a_state_validation_rejected(tmp_path):
    """No change can pass accept_threshold=10: iteration 1 proposes factor 2 and is rejected;
    iteration 2 scores factor 2 again but, marked as rejected before, does not propose it."""
    path, _ = run(tmp_path, "optimizer.num_iterations=2", "optimizer.accept_threshold=10")
    history = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]
    first, second = history[1], history[2]
    assert first["tried"] == {"scale": {"factor": 2}} and not first["accepted"]
    choice = second["update"]["variables"][0]
    marked = [c["value"] for c in choice["candidates"] if c.get("rejected_before")]
    assert marked == [2] and choice["best"] != 2
    assert second.get("tried") != first["tried"]


def test_selection_prefers_components_with_larger_preference_gaps():
    import random

    rng = random.Random(0)
    picks = [pick_component({"a": 0.9, "b": 0.1}, 0.2, rng)[0] for _ in range(200)]
    assert 0.9 < picks.count("a") / 200 < 1.0
    _, probs = pick_component({"a": 0.0, "b": 0.0}, 1.0, rng)
    assert probs == {"a": 0.5, "b": 0.5}


@pytest.mark.slow
def test_killed_run_resumes_to_the_end_without_redoing_collected_inputs(tmp_path, monkeypatch):
    real = fns.scale
    fns.CALLS["scale"] = 0

    def dies(x, factor):
        if fns.CALLS["scale"] >= 10 + 4 * 3:  # 10 val runs, four inputs' candidates, the kill
            raise KeyboardInterrupt
        return real(x, factor)

    monkeypatch.setattr(fns, "scale", dies)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "optimizer.collect.workers=1")
    path = next((tmp_path / "linear").iterdir())
    assert (path / "FAILED").exists()
    done = len((path / "rollouts/iter_001/scale.jsonl").read_text().splitlines())
    assert done == 4
    monkeypatch.setattr(fns, "scale", real)
    fns.CALLS["scale"] = 0
    path2, summary = execute("run", load(LINEAR, [f"resume={path}", "optimizer.collect.workers=1"]),
                             show_progress=False)
    assert path2 == path and (path / "DONE").exists() and not (path / "FAILED").exists()
    lines = (path / "rollouts/iter_001/scale.jsonl").read_text().splitlines()
    assert len(lines) == 8 and len({json.loads(x)["example_id"] for x in lines}) == 8
    assert summary["test"]["final"]["mean"] == 1.0


@pytest.mark.slow
def test_stage_commands_on_a_run_directory(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["collect", str(LINEAR), f"run_root={tmp_path}", "-q"])
    assert r.exit_code == 0, r.output
    path = next((tmp_path / "linear").iterdir())
    assert (path / "rollouts/iter_000/scale.jsonl").exists() and not (path / "lrf").exists()
    for stage in ("fit", "update", "evaluate"):
        r = runner.invoke(app, [stage, str(path), "-q"])
        assert r.exit_code == 0, (stage, r.output)
    assert (path / "lrf/iter_000/metrics.json").exists() and (path / "history.jsonl").exists()
    assert json.loads((path / "summary.json").read_text())["test"]["final"]["mean"] == 1.0


@pytest.mark.slow
def test_per_input_choice_mode_samples_by_local_reward_at_inference(tmp_path, monkeypatch):
    # a head fitted on these 8 inputs is never trusted (too few held-out pairs), and an
    # untrusted head chooses nothing per input (test_loop_steps): trust it to test inference
    monkeypatch.setattr(fit, "component_trust", lambda *a: {"trusted": True})
    path, summary = run(tmp_path, "optimizer.update.choice_mode=per_input",
                        "optimizer.update.choice_temperature=0.01")
    policy = yaml.safe_load((path / "final/system.yaml").read_text())["state"]["scale"]["factor"]
    assert policy["mode"] == "per_input" and policy["choices"] == [1, 2, 3]
    assert (Path(policy["reward_model"]) / "metrics.json").exists()
    preds = [json.loads(x) for x in (path / "test/final_predictions.jsonl").read_text().splitlines()]
    lrf = LocalRewardModel.load(policy["reward_model"])
    for p in preds:
        x = p["trace"]["steps"][0]["inputs"]["x"]
        chosen = p["trace"]["steps"][0]["variables"]["factor"]
        scores = lrf.score("scale", [{"x": x}] * 3, [{"y": x * c} for c in (1, 2, 3)])
        weights = [math.exp((s - max(scores)) / 0.01) for s in scores]
        prob = {c: w / sum(weights) for c, w in zip((1, 2, 3), weights, strict=True)}
        # sampling by exp(LRF / T): never a value the local reward makes implausible, and
        # the arg-max whenever the reward separates the values clearly
        assert prob[chosen] > 0.01
        if max(prob.values()) > 0.99:
            assert prob[chosen] > 0.99
    assert summary["test"]["final"]["mean"] > summary["test"]["initial"]["mean"]


class KilledAfter:
    """A ScriptedLM that is killed (KeyboardInterrupt) when asked for call number `limit + 1`."""

    def __init__(self, scripted_lm, script, limit: int | None = None):
        self.inner, self.limit = scripted_lm(script), limit

    def complete(self, request, *, component=""):
        if self.limit is not None and len(self.inner.requests) >= self.limit:
            raise KeyboardInterrupt
        return self.inner.complete(request, component=component)

    def usage_summary(self):
        return self.inner.usage_summary()

    @property
    def calls(self) -> int:
        return len(self.inner.requests)


@pytest.mark.slow
def test_run_killed_in_collection_resumes_with_no_model_call_repeated_beyond_those_in_flight(
        tmp_path, monkeypatch, scripted_lm):
    from test_baselines import WORDS, component_script

    from optimas_cli import runtime

    def script(request):  # temperature samples differ, so collection finds preference pairs
        if request.is_chat:  # the OPRO proposer
            return "Write the word in capital letters."
        out = component_script(request)
        return out.lower() if request.temperature > 0 and request.sample_index % 2 else out

    overrides = ["optimizer=optimas", "optimizer.num_iterations=1", "optimizer.collect.workers=1",
                 "optimizer.collect.num_inputs=4", "optimizer.collect.num_samples=2",
                 "optimizer.update.per_component_train_size=2", "reward.epochs=1"]

    def go(lm, root, *extra):
        monkeypatch.setattr(runtime, "make_lm", lambda composed: lm)
        return execute("run", load(WORDS, [f"run_root={root}", *overrides, *extra]),
                       show_progress=False)

    calls_at_append: list[tuple[str, int]] = []  # (file, calls so far) at each saved record
    real_append = RunDir.append_jsonl
    lm = None

    def append(self, name, record):
        real_append(self, name, record)
        calls_at_append.append((name, lm.calls))

    monkeypatch.setattr(RunDir, "append_jsonl", append)
    ref = lm = KilledAfter(scripted_lm, script)
    _, ref_summary = go(ref, tmp_path / "ref")
    first = [c for name, c in calls_at_append if name.endswith("iter_001/exclaim.jsonl")]
    assert len(first) == 4 and first[1] - first[0] > 1
    calls_at_append.clear()
    # killed in the first collection (the final component's), in the middle of its second input
    killed = lm = KilledAfter(scripted_lm, script, limit=first[0] + (first[1] - first[0]) // 2)
    with pytest.raises(KeyboardInterrupt):
        go(killed, tmp_path / "run")
    monkeypatch.setattr(RunDir, "append_jsonl", real_append)
    path = next((tmp_path / "run" / "words").iterdir())
    assert (path / "FAILED").exists()
    assert len((path / "history.jsonl").read_text().splitlines()) == 1  # the initial record only
    done = (path / "rollouts/iter_001/exclaim.jsonl").read_text().splitlines()
    assert 1 <= len(done) < 4  # some inputs finished, and the kill came mid-collection
    saved = [c for name, c in calls_at_append if name.endswith("iter_001/exclaim.jsonl")]
    in_flight = killed.calls - saved[-1]  # calls after the last saved input
    assert in_flight > 0
    resumed = KilledAfter(scripted_lm, script)
    path2, summary = go(resumed, tmp_path / "new", f"resume={path}")
    assert path2 == path and (path / "DONE").exists()
    # only the calls of the one input in flight were made again
    assert killed.calls + resumed.calls == ref.calls + in_flight
    # the killed process is counted (the optimization's calls and the test's, apart)
    assert summary["lm_calls"] + summary["test_lm_calls"] == killed.calls + resumed.calls
    assert summary["test"] == ref_summary["test"]
    lines = (path / "rollouts/iter_001/exclaim.jsonl").read_text().splitlines()
    assert lines[:len(done)] == done and len(lines) == 4
