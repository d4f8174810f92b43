"""PubMedQA system: label extraction, loader and splits, the config, evaluate (scripted and real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from optimas_cli import runtime
from optimas_cli.cli import app
from optimas_cli.config import PROJECT_CONFIGS, load
from optimas_cli.data import Example, split
from optimas_cli.data_files import SHARED_DATA
from optimas_cli.jobs import execute
from optimas_cli.schema import DataConfig
from systems.pubmedqa import extract_label, metric
from systems.pubmedqa import load as load_pubmedqa
from systems.pubmedqa.data import DEFAULT_PATH, TEST_PATH

PUBMEDQA = PROJECT_CONFIGS / "pubmedqa.yaml"
TRAIN, TEST = SHARED_DATA / DEFAULT_PATH, SHARED_DATA / TEST_PATH


@pytest.fixture
def pubmedqa_data():
    if not (TRAIN.exists() and TEST.exists()):
        pytest.skip(f"PubMedQA data not found at {TRAIN.parent}")


@pytest.mark.parametrize("text, label", [
    ("yes", "yes"), ("Yes.", "yes"), (" NO", "no"), ("Maybe, the sample was small", "maybe"),
    ("no, it does not", "no"), ("yes/no", "yes"), ("The answer is maybe", "maybe"),
    ("It is not clear", None),  # "no" inside "not"
    ("I don't know", None),  # ... inside "know"
    ("Nothing was found", None),  # ... inside "nothing"
    ("no-one knows", None), ("yesterday", None), ("eyes", None), ("maybes", None),
    ("", None), ("not known; yes in the end", "yes"),
])
def test_extract_label_whole_words_only(text, label):
    assert extract_label(text) == label


def ex(gold: str) -> Example:
    return Example(id="1", inputs={}, target={"answer": gold})


def test_metric_scores_accuracy_parsed_and_said_yes():
    assert metric(ex("yes"), {"answer": "Yes, it does"}) == {
        "score": 1.0, "accuracy": 1.0, "parsed": 1.0, "said_yes": 1.0}
    assert metric(ex("no"), {"answer": "yes"}) == {
        "score": 0.0, "accuracy": 0.0, "parsed": 1.0, "said_yes": 1.0}
    assert metric(ex("maybe"), {"answer": "maybe"})["said_yes"] == 0.0
    # unparseable: scores 0 even where gold "no" hides inside "not"
    assert metric(ex("no"), {"answer": "not"}) == {
        "score": 0.0, "accuracy": 0.0, "parsed": 0.0, "said_yes": 0.0}
    assert metric(ex("yes"), {})["parsed"] == 0.0


def test_loader_reads_both_files_and_splits_are_disjoint(pubmedqa_data):
    train = load_pubmedqa(DataConfig(path=str(TRAIN)))
    test = load_pubmedqa(DataConfig(path=str(TEST)))
    assert len(train.examples) == 500 and len(test.examples) == 300
    first = train.examples[0]
    assert set(first.inputs) == {"question", "context"} and first.target["answer"] in (
        "yes", "no", "maybe")
    assert isinstance(first.inputs["context"], str) and len(first.inputs["context"]) > 200
    # the two files share no PubMed id: the official test file is unseen by a run
    assert not {e.id for e in train.examples} & {e.id for e in test.examples}
    cfg = DataConfig(train_size=30, val_size=20, test_size=50, seed=3)
    parts = split(load_pubmedqa(cfg), cfg)  # default: train/val from train, test from test file
    assert [len(parts[k]) for k in ("train", "val", "test")] == [30, 20, 50]
    ids = [{e.id for e in parts[k]} for k in ("train", "val", "test")]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 100
    assert ids[0] | ids[1] <= {e.id for e in train.examples}
    assert ids[2] <= {e.id for e in test.examples}
    assert split(load_pubmedqa(cfg), cfg)["test"][0].id == parts["test"][0].id  # seeded
    one_file = DataConfig(path=str(TEST), train_size=30, val_size=20, test_size=50)
    assert sum(len(v) for v in split(load_pubmedqa(one_file), one_file).values()) == 100


def test_loader_names_a_bad_label(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "context": ["c"], "groundtruth": "perhaps"}) + "\n")
    with pytest.raises(ValueError, match=rf"^{bad} line 1 has groundtruth 'perhaps'"):
        load_pubmedqa(DataConfig(path=str(bad)))


def test_validate_pubmedqa_config(seed_data):
    result = CliRunner().invoke(app, ["validate", str(PUBMEDQA)])
    assert result.exit_code == 0, result.output
    assert "context_analyst -> problem_solver" in " ".join(result.output.split())


def test_evaluate_reports_said_yes_and_parsed(tmp_path, monkeypatch, scripted_lm, pubmedqa_data):
    """A scripted model that always says yes: metrics.json shows the rates beside accuracy."""
    lm = scripted_lm(lambda r: "yes" if r.prompt.endswith("Answer (yes/no/maybe):") else "x")
    monkeypatch.setattr(runtime, "make_lm", lambda composed: lm)
    composed = load(PUBMEDQA, [f"run_root={tmp_path}", "data.test_size=300"])
    path, _ = execute("evaluate", composed, show_progress=False)
    m = json.loads((path / "metrics.json").read_text())
    assert m["n"] == 300 and m["failed"] == 0
    assert m["metrics"]["said_yes"]["mean"] == 1.0 and m["metrics"]["parsed"]["mean"] == 1.0
    assert m["mean"] == pytest.approx(172 / 300)  # the always-yes baseline of the test file
    assert len(lm.requests) == 2 * 300


@pytest.mark.slow
def test_real_evaluate_three_questions_smollm2(tmp_path, isolated_cache, pubmedqa_data):
    env = dict(os.environ, OPTIMAS_CACHE_DIR=str(isolated_cache))
    proc = subprocess.run(
        [sys.executable, "-m", "optimas_cli.cli", "evaluate", str(PUBMEDQA), "data.test_size=3",
         f"run_root={tmp_path}", "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((tmp_path / "pubmedqa").iterdir())
    m = json.loads((run / "metrics.json").read_text())
    assert m["n"] == 3 and m["failed"] == 0 and m["lm"]["total"]["calls"] == 6
    assert {"accuracy", "parsed", "said_yes"} <= set(m["metrics"])
    preds = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert all(p["trace"]["steps"][0]["outputs"]["summary"].strip() for p in preds)
