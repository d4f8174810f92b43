"""The evaluate stage and run directory, with a scripted LM (logic only; the real model is in test_e2e)."""

from __future__ import annotations

import json

import pytest

from optimas_cli import runtime
from optimas_cli.config import PROJECT_CONFIGS, load
from optimas_cli.jobs import execute

HOTPOT = PROJECT_CONFIGS / "hotpotqa.yaml"


def query_block(prompt: str) -> str:
    return prompt.split("\n\n")[-1]


def context_answer(request) -> str:
    """Answer with the retrieved context itself (so k changes the score); other steps echo."""
    block = query_block(request.prompt)
    if block.endswith("Answer:"):
        ctx = block.split("Context:", 1)[1].split("\nHint:", 1)[0]
        return " ".join(ctx.split())
    return block.splitlines()[0].split(":", 1)[1]


@pytest.fixture
def use_lm(monkeypatch, scripted_lm):
    def _use(script):
        lm = scripted_lm(script)
        monkeypatch.setattr(runtime, "make_lm", lambda composed: lm)
        return lm
    return _use


def test_evaluate_writes_a_complete_run_directory(tmp_path, use_lm, hotpot_path):
    lm = use_lm(context_answer)
    composed = load(HOTPOT, [f"run_root={tmp_path}", "data.test_size=6", "eval.workers=3"])
    path, summary = execute("evaluate", composed, show_progress=False)
    assert path.parent.parent == tmp_path and path.parent.name == "hotpotqa"
    names = {p.name for p in path.iterdir()}
    assert {"config.yaml", "overrides.txt", "run.log", "predictions.jsonl", "metrics.json",
            "DONE"} <= names and "FAILED" not in names
    preds = [json.loads(line) for line in (path / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 6
    steps = [s["component"] for s in preds[0]["trace"]["steps"]]
    assert steps == ["question_rewriter", "info_extractor", "retriever", "hint_generator",
                     "answer_generator"]
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["n"] == 6 and metrics["failed"] == 0
    assert metrics["mean"] == pytest.approx(sum(p["score"] for p in preds) / 6)
    assert set(metrics["metrics"]) == {"score", "f1", "em"}
    assert metrics["per_component"]["answer_generator"]["calls"] == 6
    assert "retriever" in metrics["per_component"]  # no LM calls, but its steps are counted
    assert len(lm.requests) == 6 * 4
    assert (path / "overrides.txt").read_text().splitlines()[1] == "data.test_size=6"


def test_failed_examples_score_zero_and_are_counted(tmp_path, use_lm, hotpot_path):
    def flaky(request):
        block = query_block(request.prompt)
        if block.endswith("Answer:") and len(block.splitlines()[0]) % 2:
            raise RuntimeError("model fell over")
        return context_answer(request)

    use_lm(flaky)  # fails 6 of the 8: past the default eval.max_failed_share, allowed here
    composed = load(HOTPOT, [f"run_root={tmp_path}", "data.test_size=8", "eval.max_failed_share=1"])
    path, summary = execute("evaluate", composed, show_progress=False)
    preds = [json.loads(line) for line in (path / "predictions.jsonl").read_text().splitlines()]
    failed = [p for p in preds if p["error"]]
    assert len(preds) == 8 and summary["failed"] == len(failed) > 0
    assert all(p["score"] == 0.0 and "model fell over" in p["error"] for p in failed)
    assert summary["per_component"]["answer_generator"]["errors"] == len(failed)


def test_retriever_k_changes_the_score(tmp_path, use_lm, hotpot_path):
    use_lm(context_answer)
    means = []
    for k in (1, 25):
        composed = load(HOTPOT, [f"run_root={tmp_path}", "data.test_size=10",
                                 f"system.components.retriever.variables.k.value={k}"])
        means.append(execute("evaluate", composed, show_progress=False)[1]["mean"])
    assert means[0] != means[1]


def test_crash_writes_failed_with_traceback(tmp_path, use_lm, hotpot_path, monkeypatch):
    use_lm(context_answer)
    from optimas_cli.stages import evaluate

    def explode(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(evaluate, "evaluate_state", explode)
    composed = load(HOTPOT, [f"run_root={tmp_path}", "data.test_size=2"])
    with pytest.raises(RuntimeError):
        execute("evaluate", composed, show_progress=False)
    run = next((tmp_path / "hotpotqa").iterdir())
    assert "disk on fire" in (run / "FAILED").read_text() and not (run / "DONE").exists()
    assert (run / "config.yaml").exists()
