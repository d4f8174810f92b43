"""Amazon next-item system: index parsing, the metric, the loader and its errors, the floors,
the config, evaluate and a tiny `optimas run` with a scripted LM (real model: slow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from optimas_cli import runtime
from optimas_cli.cli import app
from optimas_cli.config import PROJECT_CONFIGS, load
from optimas_cli.data import Example, split
from optimas_cli.data_files import SHARED_DATA
from optimas_cli.errors import ConfigError
from optimas_cli.jobs import execute
from optimas_cli.schema import DataConfig
from systems.amazon import extract_choice, metric
from systems.amazon import load as load_amazon
from systems.amazon.data import FILES, session_text
from systems.amazon.floors import floors, overlap_choice

AMAZON = PROJECT_CONFIGS / "amazon.yaml"
PRIMARY, MULTI = SHARED_DATA / FILES["primary"], SHARED_DATA / FILES["multilingual"]
QWEN = "local/qwen2.5-coder-0.5b-instruct"
HEADER = "question,choices,answer\n"


@pytest.fixture
def amazon_data():
    if not (PRIMARY.exists() and MULTI.exists()):
        pytest.skip(f"Amazon data not found at {PRIMARY.parent}")


# ---------------------------------------------------------------- parsing and metric


@pytest.mark.parametrize("text, index", [
    ("2", 2), (" 2", 2), ("0", 0), ("3\n", 3), ("2.", 2), ("[2]", 2), ("(3)", 3), ("3)", 3),
    ("#1", 1), ("Answer: 3", 3), ("Product 1 is the best fit", 1), ("The answer is 0.", 0),
    ("2, then 3", 2),  # the first number decides
    ("10", None), ("12", None), ("01", None),  # "1" inside a longer number is no index
    ("1.5", None), ("1,5", None), ("-1", None), ("2-3", None),  # decimals, signs, ranges
    ("4", None), ("7 is best", None),  # out of range: no candidate 4
    ("x2", None), ("2nd", None), ("B", None), ("the second one", None), ("", None),
    ("4 then 2", None),  # the first number decides even when it is out of range
])
def test_extract_choice_is_strict(text, index):
    assert extract_choice(text) == index


def ex(gold: int) -> Example:
    return Example(id="1", inputs={}, target={"answer": gold})


def test_metric_scores_accuracy_parsed_and_chose_first():
    assert metric(ex(2), {"answer": "2"}) == {
        "score": 1.0, "accuracy": 1.0, "parsed": 1.0, "chose_first": 0.0}
    assert metric(ex(1), {"answer": "0"}) == {
        "score": 0.0, "accuracy": 0.0, "parsed": 1.0, "chose_first": 1.0}
    assert metric(ex(0), {"answer": "0: the first"})["score"] == 1.0
    # unparseable: scores 0 even where the gold index hides inside the reply
    assert metric(ex(1), {"answer": "10"}) == {
        "score": 0.0, "accuracy": 0.0, "parsed": 0.0, "chose_first": 0.0}
    assert metric(ex(0), {}) == {"score": 0.0, "accuracy": 0.0, "parsed": 0.0, "chose_first": 0.0}


# ---------------------------------------------------------------- loader


def test_loader_reads_both_files_with_their_label_distribution(amazon_data):
    primary = load_amazon(DataConfig()).examples
    multi = load_amazon(DataConfig(path="multilingual")).examples
    both = load_amazon(DataConfig(path="both")).examples
    assert (len(primary), len(multi), len(both)) == (102, 318, 420)
    # answers are 0-based indices; the primary file's answers are 16/27/31/28 of 0/1/2/3
    assert floors(primary)["labels"] == {0: 16, 1: 27, 2: 31, 3: 28}
    assert floors(multi)["labels"] == {0: 82, 1: 71, 2: 80, 3: 85}
    assert len({e.id for e in both}) == 420 and both[0].id == "primary-001"
    first = primary[0]
    assert set(first.inputs) == {"session", "candidates"} and first.target == {"answer": 2}
    assert first.inputs["session"].startswith("Oral-B iO9 Electric Toothbrush")
    assert len(first.inputs["session"].splitlines()) == first.meta["session_length"] == 7
    lines = first.inputs["candidates"].splitlines()
    assert [x[:3] for x in lines] == ["0: ", "1: ", "2: ", "3: "]
    assert lines[2] == "2: " + first.meta["choices"][2] and "Oral-B Advance" in lines[2]
    assert first.meta["market"] is None
    assert {e.meta["market"] for e in multi} == {"German", "Spanish", "French", "Italian",
                                                 "Japanese"}
    # the same file through data.path reads the same rows
    again = load_amazon(DataConfig(path=str(PRIMARY))).examples
    assert [e.inputs for e in again] == [e.inputs for e in primary]


def test_splits_are_disjoint_seeded_and_sized(amazon_data):
    cfg = DataConfig(train_size=30, val_size=20, test_size=50, seed=3)
    parts = split(load_amazon(cfg), cfg)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [30, 20, 50]
    ids = [{e.id for e in parts[k]} for k in ("train", "val", "test")]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 100
    assert split(load_amazon(cfg), cfg)["test"][0].id == parts["test"][0].id
    too_many = DataConfig(train_size=60, val_size=20, test_size=50)
    with pytest.raises(ValueError, match="only 102 examples"):
        split(load_amazon(too_many), too_many)


def test_long_sessions_keep_their_most_recent_products():
    titles = [f"product {i} " + "x" * 90 for i in range(30)]  # 100 bytes + newline each
    text = session_text(titles, max_bytes=1000)
    lines = text.splitlines()
    assert lines[0] == "(21 earlier products not shown)" and lines[1:] == titles[21:]
    assert session_text(titles[:3], max_bytes=1000).splitlines() == titles[:3]
    assert session_text(["é" * 600], max_bytes=10) == "é" * 600  # the last one always stays
    # bytes, not characters: a Japanese title costs three bytes a character
    ja = ["商品" * 100] * 4  # 600 bytes each
    assert session_text(ja, max_bytes=1300).splitlines()[1:] == ja[2:]


def test_every_loaded_session_fits_the_byte_budget(amazon_data):
    for e in load_amazon(DataConfig(path="both")).examples:
        shown = [t for t in e.inputs["session"].splitlines() if not t.startswith("(")]
        assert len(shown) == 1 or sum(len(t.encode()) + 1 for t in shown) <= 1800


@pytest.mark.parametrize("row, message", [
    ('"Product Sequence:\nA\nB","[\'a\', \'b\', \'c\', \'d\']",B',
     r"bad.csv lines 2-4: column 'answer' is 'B'; expected the 0-based index"),
    ('"Product Sequence:\nA","[\'a\', \'b\', \'c\', \'d\']",4', "column 'answer' is '4'"),
    ('"Product Sequence:\nA","[\'a\', \'b\', \'c\']",1', "column 'choices' must list 4"),
    ('"Product Sequence:\nA","a, b, c, d",1', "column 'choices' is not a Python list literal"),
    ('"Products: A","[\'a\', \'b\', \'c\', \'d\']",1', "has no 'Product Sequence:' line"),
    ('"Product Sequence:\n","[\'a\', \'b\', \'c\', \'d\']",1', "lists no product"),
])
def test_loader_names_file_record_column_and_value(tmp_path, row, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + row + "\n")
    with pytest.raises(ValueError, match=message) as err:
        load_amazon(DataConfig(path=str(bad)))
    assert str(bad) in str(err.value)


def test_loader_names_missing_columns_and_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,options,answer\nq,o,1\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['choices'\]"):
        load_amazon(DataConfig(path=str(bad)))
    with pytest.raises(FileNotFoundError, match="primary|multilingual|both"):
        load_amazon(DataConfig(path=str(tmp_path / "absent.csv")))


# ---------------------------------------------------------------- floors


def test_floors_of_the_primary_file(amazon_data):
    f = floors(load_amazon(DataConfig()).examples)
    assert f["n"] == 102 and f["random"] == 0.25
    assert f["always_first"] == pytest.approx(16 / 102)
    assert f["best_constant"] == pytest.approx(31 / 102) and f["best_constant_index"] == 2
    assert f["word_overlap"] > 0.8  # the titles alone give most answers away


def test_overlap_choice_takes_the_most_shared_words_and_the_lowest_index_on_ties():
    def e(session, choices):
        return Example(id="x", inputs={"session": session}, target={"answer": 0},
                       meta={"choices": choices})
    assert overlap_choice(e("red garden hose", ["blue cup", "garden hose reel", "hose", "x"])) == 1
    assert overlap_choice(e("nothing shared", ["a b", "c d", "e f", "g h"])) == 0


# ---------------------------------------------------------------- config, evaluate, run


def test_validate_amazon_config(seed_data):
    result = CliRunner().invoke(app, ["validate", str(AMAZON)])
    assert result.exit_code == 0, result.output
    assert "session_analyzer -> candidate_profiler -> next_item_decider" in " ".join(
        result.output.split())


def test_the_loaders_named_sets_load_as_data_path_and_a_typo_is_refused():
    # `data.path=multilingual` (the config's own example) is a name the loader reads, not a file
    for name in ("primary", "multilingual", "both"):
        assert load(AMAZON, [f"data.path={name}"]).run.data.path == name
    with pytest.raises(ConfigError, match="'data.path': 'bothh'"):
        load(AMAZON, ["data.path=bothh"])


def test_config_declares_adapters_on_the_two_local_components_and_a_decider_prompt():
    system = load(AMAZON, []).run.system
    assert list(system.components) == ["session_analyzer", "candidate_profiler",
                                       "next_item_decider"]
    types = {n: {v: var.type for v, var in c.variables.items()} for n, c in system.components.items()}
    assert types == {"session_analyzer": {"adapter": "weights"},
                     "candidate_profiler": {"adapter": "weights"},
                     "next_item_decider": {"prompt": "prompt"}}
    assert all(c.kind == "llm" for c in system.components.values())
    for name in ("session_analyzer", "candidate_profiler"):  # fixed prompts: params
        params = system.components[name].params
        assert params["instruction"] and len(params["demos"]) >= 1
    demos = system.components["next_item_decider"].variables["prompt"].demos
    assert sorted(d["answer"] for d in demos) == ["1", "3"]  # no position taught as a default


def test_a_null_variable_is_dropped_and_its_component_runs_on_params(tmp_path, monkeypatch,
                                                                    scripted_lm, amazon_data):
    """`variables.adapter=null` (the prompts-only ablation) leaves session_analyzer with no
    variable: not optimizable, and its fixed instruction and demonstrations still reach the model."""
    composed = load(AMAZON, [f"run_root={tmp_path}", "data.test_size=2",
                             "system.components.session_analyzer.variables.adapter=null"])
    assert composed.run.system.components["session_analyzer"].variables == {}
    lm = scripted_lm(lambda r: "0" if r.prompt.endswith("(0-3):") else "x")
    monkeypatch.setattr(runtime, "make_lm", lambda composed: lm)
    execute("evaluate", composed, show_progress=False)
    analyzer = [r.prompt for c, r in lm.requests if c == "session_analyzer"]
    assert len(analyzer) == 2
    assert all(p.startswith("Read the products a shopper viewed") and "Sonicare" in p
               for p in analyzer)


def _query(prompt: str) -> str:
    return prompt.rsplit("\n\n", 1)[-1]  # the example being asked, after the demonstrations


def amazon_script(request) -> str:
    """session_analyzer: the last product viewed; candidate_profiler: a fixed line a candidate;
    next_item_decider: with Qwen 0.5B the candidate sharing most words with the intent, with
    any other model always index 0. The OPRO proposer gets one instruction."""
    if request.is_chat:
        return "Pick the candidate most like the products viewed. Answer with its number."
    prompt = request.prompt
    query = _query(prompt)
    if prompt.endswith("Intent:"):
        return query.splitlines()[-2]
    if prompt.endswith("Assessment:"):
        return "\n".join(f"{i}: maybe" for i in range(4))
    if prompt.endswith("Next product (0-3):"):
        if request.model != QWEN:
            return "0"
        intent = set(re.findall(r"\w+", query.splitlines()[0].lower()))
        lines = [ln.removeprefix("Candidates: ") for ln in query.splitlines()]
        cands = [ln.split(": ", 1)[1] for ln in lines if re.match(r"[0-3]: ", ln)][:4]
        shared = [len(intent & set(re.findall(r"\w+", c.lower()))) for c in cands]
        return str(shared.index(max(shared)))
    raise AssertionError(f"unexpected prompt ending {prompt[-40:]!r}")


def test_evaluate_always_first_scores_the_always_first_floor(tmp_path, monkeypatch, scripted_lm,
                                                             amazon_data):
    lm = scripted_lm(lambda r: "0" if r.prompt.endswith("(0-3):") else "x")
    monkeypatch.setattr(runtime, "make_lm", lambda composed: lm)
    composed = load(AMAZON, [f"run_root={tmp_path}", "data.train_size=0", "data.val_size=0",
                             "data.test_size=102"])
    path, _ = execute("evaluate", composed, show_progress=False)
    m = json.loads((path / "metrics.json").read_text())
    assert m["n"] == 102 and m["failed"] == 0 and len(lm.requests) == 3 * 102
    assert m["mean"] == pytest.approx(16 / 102)  # the always-first floor of the primary file
    assert m["metrics"]["chose_first"]["mean"] == 1.0 and m["metrics"]["parsed"]["mean"] == 1.0


def test_evaluate_counts_unparseable_replies(tmp_path, monkeypatch, scripted_lm, amazon_data):
    lm = scripted_lm(lambda r: "10" if r.prompt.endswith("(0-3):") else "x")
    monkeypatch.setattr(runtime, "make_lm", lambda composed: lm)
    composed = load(AMAZON, [f"run_root={tmp_path}", "data.test_size=10"])
    path, _ = execute("evaluate", composed, show_progress=False)
    m = json.loads((path / "metrics.json").read_text())
    assert m["n"] == 10 and m["failed"] == 0 and m["mean"] == 0.0
    assert m["metrics"]["parsed"]["mean"] == 0.0


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    from test_rewards import make_tiny_backbone

    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"))


# the adapters dropped and a model variable given to the decider: a scripted LM cannot be
# fine-tuned (tests/test_weights_train.py runs the weights loop on the real model)
NO_ADAPTERS = [f"system.components.{c}.variables.adapter=null"
               for c in ("session_analyzer", "candidate_profiler")]
DECIDER_MODEL = ("+system.components.next_item_decider.variables.model="
                 "{type:model,value:${lm.model},choices:${lm.choices}}")


def test_tiny_optimas_run_picks_the_better_decider_model(tmp_path, monkeypatch, scripted_lm,
                                                         tiny_backbone, amazon_data):
    """One Optimas iteration on the final component: the rollouts show Qwen 0.5B's answers
    beat always-first, the loop switches the decider to it, validation accepts, test rises.
    (The model choice follows the measured returns of the rolled-out answers, so a tiny random
    reward backbone stands in for MiniLM.)"""
    lm = scripted_lm(amazon_script)
    monkeypatch.setattr(runtime, "make_lm", lambda composed: lm)
    composed = load(AMAZON, [
        f"run_root={tmp_path}", f"reward.backbone={tiny_backbone}", "data.train_size=8", "data.val_size=8", "data.test_size=8",
        "optimizer.num_iterations=1", "optimizer.collect.num_inputs=4",
        "optimizer.collect.num_samples=2", "optimizer.update.per_component_train_size=2",
        "optimizer.update.num_candidates=1", "reward.epochs=1", "reward.max_epochs=1",
        *NO_ADAPTERS, DECIDER_MODEL])
    path, summary = execute("run", composed, show_progress=False)
    assert (path / "DONE").exists()
    history = [json.loads(x) for x in (path / "history.jsonl").read_text().splitlines()]
    it = history[1]
    assert it["component"] == "next_item_decider" and it["accepted"]
    assert it["val_after"] > it["val_before"]
    state = yaml.safe_load((path / "final/system.yaml").read_text())["state"]
    assert state["next_item_decider"]["model"] == QWEN
    assert set(state) == {"next_item_decider"}  # the other two have no variable left
    assert summary["test"]["final"]["mean"] > summary["test"]["initial"]["mean"]


@pytest.mark.slow
def test_real_evaluate_three_questions_smollm2(tmp_path, isolated_cache, amazon_data):
    env = dict(os.environ, OPTIMAS_CACHE_DIR=str(isolated_cache))
    proc = subprocess.run(
        [sys.executable, "-m", "optimas_cli.cli", "evaluate", str(AMAZON), "data.test_size=3",
         f"run_root={tmp_path}", "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((tmp_path / "amazon").iterdir())
    m = json.loads((run / "metrics.json").read_text())
    assert m["n"] == 3 and m["failed"] == 0 and m["lm"]["total"]["calls"] == 9
    assert {"accuracy", "parsed", "chose_first"} <= set(m["metrics"])
    preds = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    for p in preds:
        outputs = [s["outputs"] for s in p["trace"]["steps"]]
        assert outputs[0]["intent"].strip() and outputs[1]["profiles"].strip()


SHORT_SESSIONS = [  # (viewed titles, four candidates, index of the next one): short prompts
    (["Blue cotton socks", "Red cotton socks"], ["Green cotton socks", "Garden hose", "Phone case",
                                                 "Desk lamp"], 0),
    (["Oak dining table", "Oak dining chair"], ["Dog food", "Oak sideboard", "Car wax", "Kite"], 1),
    (["Tent for 4 people", "Sleeping bag"], ["Hair dryer", "Printer ink", "Camping lantern",
                                             "Yoga mat"], 2),
    (["Running shoes, size 42", "Running socks"], ["Coffee beans", "Cat litter", "Baby bottle",
                                                   "Running shorts"], 3),
    (["Electric toothbrush", "Brush heads, 4 pack"], ["Water flosser", "Lawn mower", "Guitar",
                                                      "Rice cooker"], 0),
    (["Puzzle, 1000 pieces", "Puzzle mat"], ["Bike helmet", "Puzzle, 500 pieces", "Mop",
                                             "Wine glasses"], 1),
    (["Chef knife", "Cutting board"], ["Tennis balls", "Dog leash", "Knife sharpener",
                                       "Sunscreen"], 2),
    (["Laptop stand", "Wireless mouse"], ["Shampoo", "Flower pot", "Fishing rod",
                                          "Wireless keyboard"], 3),
    (["Green tea, 100 bags", "Tea cup"], ["Teapot", "Drill bits", "Socks", "Umbrella"], 0),
    (["Yoga mat", "Yoga block"], ["Toaster", "Yoga strap", "Car seat", "Paint brush"], 1),
    (["Baby bottle", "Bottle brush"], ["Ski goggles", "Hammer", "Bottle warmer", "Candle"], 2),
    (["Phone charger", "USB cable"], ["Bread knife", "Plant seeds", "Ink pen", "Power bank"], 3),
]


def short_sessions_csv(path):
    """A CSV in the KDD Cup layout with short titles (the real ones cost ~2,600 prompt tokens a
    question, too slow for a test of the loop)."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["question", "choices", "answer"])
        for viewed, cands, answer in SHORT_SESSIONS:
            question = ("A user on an online shopping platform has clicked the following list of "
                        "products. Select the product that the user may interact with next.\n"
                        "Product Sequence: \n" + "\n".join(viewed))
            w.writerow([question, repr(cands), answer])
    return path


@pytest.mark.slow
def test_real_tiny_run_trains_an_adapter_by_dpo_and_serves_it(tmp_path, isolated_cache,
                                                               monkeypatch):
    """The Amazon config on SmolLM2 with one adapter left to optimize (candidate_profiler's;
    the decider's prompt search has its scripted test above): one iteration collects, fits the
    LRF, trains the LoRA adapter by DPO, saves it under weights/, validates, and serves it in
    the final test when accepted; `contributions` names what the accepted change added."""
    from test_weights_train import check_weights_iteration, trust_the_head

    trust_the_head(monkeypatch)
    data = short_sessions_csv(tmp_path / "short.csv")
    composed = load(AMAZON, [
        f"run_root={tmp_path}", f"data.path={data}", "data.train_size=6", "data.val_size=3",
        "data.test_size=3", "system.components.session_analyzer.variables.adapter=null",
        "system.components.next_item_decider.variables.prompt=null",
        "optimizer.num_iterations=1", "optimizer.min_pairs=1", "optimizer.collect.num_inputs=4",
        "optimizer.collect.num_samples=3", "optimizer.update.per_component_train_size=3",
        "reward.epochs=1", "reward.max_epochs=1", "optimizer.update.weights.steps=2",
        "optimizer.update.weights.samples=3", "optimizer.update.weights.kl_samples=1",
        "optimizer.update.weights.threads=2"])
    path, summary = execute("run", composed, show_progress=False)
    it, _, final = check_weights_iteration(path, "candidate_profiler")
    assert set(final) == {"candidate_profiler"}
    expected = {"candidate_profiler.adapter"} if it["accepted"] and it["changed"] else set()
    assert set(summary["contributions"]) == expected
    assert summary["test"]["final"]["n"] == 3
