"""Baselines (search, llmselector, textgrad) run for real on tiny systems.

tests/linear.yaml: python components, `scale.factor` in [1, 2, 3], 2 is best.
tests/words.yaml: two llm components (upper -> exclaim) answered by a ScriptedLM,
whose answers depend on the model and the instruction; its loader and metric live
here (`test_baselines:load_words`, `test_baselines:word_metric`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from optimas_cli.config import ConfigError, load
from optimas_cli.jobs import execute, run_command
from optimas_cli.methods import load_checked
from optimas_cli.run_dir import RunDir
from optimas_cli.runtime import build_runtime


def run_loop(rt, run_dir: RunDir, show_progress: bool = False) -> dict:
    """`optimas run`'s work (the method, then the test evaluation) on a prepared runtime."""
    return run_command("run", rt, run_dir, show_progress)

HERE = Path(__file__).parent
LINEAR = HERE / "linear.yaml"
WORDS = HERE / "words.yaml"
SMOL, GEMMA = "local/smollm2-135m-instruct", "local/gemma3-270m"
WORD_LIST = ["apple", "river", "stone", "cloud", "tiger", "maple", "ocean", "piano", "lemon",
             "comet", "violet", "amber", "hazel", "cedar"]


# ---------------------------------------------------------------- the words system


def load_words(cfg):
    from optimas_cli.data import Dataset, Example

    return Dataset(examples=[Example(id=w, inputs={"word": w}, target={"out": w.upper() + "!"})
                             for w in WORD_LIST])


def word_metric(example, fields) -> dict:
    out, gold = str(fields["out"]).strip(), example.target["out"]
    return {"score": 0.5 * (out.rstrip("!") == gold.rstrip("!")) + 0.5 * out.endswith("!")}


def _field(prompt: str, label: str) -> str:
    return re.findall(rf"^{label}: (.*)$", prompt, flags=re.MULTILINE)[-1]


def component_script(request) -> str:
    """upper: capitals with gemma or an instruction asking for capitals; exclaim: '!' with smollm2."""
    prompt = request.prompt
    instruction = prompt.split("\n\n")[0]
    if prompt.endswith("Caps:"):
        word = _field(prompt, "Word")
        return word.upper() if request.model == GEMMA or "capital" in instruction else word
    if prompt.endswith("Out:"):
        caps = _field(prompt, "Caps")
        return caps + "!" if request.model == SMOL else caps
    raise AssertionError(f"unexpected prompt {prompt!r}")


def textgrad_script(tgd_reply: str):
    """Components as above; textgrad's loss, backward and TGD calls get canned replies."""

    def script(request) -> str:
        if request.prompt is not None:
            return component_script(request)
        system = request.messages[0][1] if len(request.messages) > 1 else ""
        user = request.messages[-1][1]
        if "improves text (i.e., variable)" in system:  # TGD's optimizer prompt
            if "'upper' step" in user:
                return tgd_reply
            return "<IMPROVED_VARIABLE>Repeat the text and add an exclamation mark.</IMPROVED_VARIABLE>"
        if "gradient (feedback) engine" in system:
            return "The instruction should ask for the word in capital letters."
        if system.startswith("You evaluate the final output"):
            return "The output is not in capital letters."
        raise AssertionError(f"unexpected textgrad call {request.messages!r}")

    return script


def run_with(lm, config: Path, tmp_path: Path, *overrides: str):
    """A whole `optimas run` (baseline + final test evaluation) with an injected LM."""
    composed = load(config, [f"run_root={tmp_path}", *overrides])
    rt = build_runtime(composed, lm=lm)
    rd = RunDir.create(composed)
    summary = run_loop(rt, rd, show_progress=False)
    return rd.path, summary


def history(path: Path) -> list[dict]:
    return [json.loads(x) for x in (path / "history.jsonl").read_text().splitlines()]


def final_state(path: Path) -> dict:
    return yaml.safe_load((path / "final/system.yaml").read_text())["state"]


def run_linear(tmp_path, *overrides):
    return execute("run", load(LINEAR, [f"run_root={tmp_path}", *overrides]), show_progress=False)


def check_format(hist: list[dict], budget: int | None) -> None:
    """The Optimas loop's history format, and the budget."""
    assert hist[0]["kind"] == "initial" and hist[0]["iteration"] == 0
    assert set(hist[0]) >= {"val", "state", "system_runs", "lm_calls"}
    for i, h in enumerate(hist[1:], start=1):
        assert h["iteration"] == i and h["kind"] == "iteration"
        assert set(h) >= {"component", "val_before", "val_after", "accepted", "changed", "state",
                          "system_runs", "lm_calls", "candidate"}
        assert h["system_runs"] >= hist[i - 1]["system_runs"]
    if budget is not None:
        assert hist[-1]["system_runs"] <= budget


# ---------------------------------------------------------------- search


def test_search_finds_the_best_factor_on_val_within_budget(tmp_path):
    path, summary = run_linear(tmp_path, "optimizer=search", "optimizer.budget_system_runs=30")
    hist = history(path)
    check_format(hist, 30)
    assert final_state(path) == {"scale": {"factor": 2}}
    tried = {h["candidate"]["scale"]["factor"] for h in hist[1:]}
    assert 2 in tried and 1 not in tried  # the initial value is never re-evaluated
    best = next(h for h in hist[1:] if h["candidate"]["scale"]["factor"] == 2)
    assert best["accepted"] and best["val_after"] == 1.0
    assert summary["test"]["final"]["mean"] == 1.0 and summary["optimizer"] == "search"
    assert (path / "val_score.png").exists() and (path / "DONE").exists()


def test_search_stops_before_the_budget_would_be_exceeded(tmp_path):
    # one val evaluation costs 10 runs: 25 allows the initial one and one candidate
    path, _ = run_linear(tmp_path, "optimizer=search", "optimizer.budget_system_runs=25",
                         "optimizer.options.method=grid")
    hist = history(path)
    check_format(hist, 25)
    assert len(hist) == 2 and hist[-1]["system_runs"] == 20
    assert hist[1]["candidate"] == {"scale": {"factor": 2}}  # grid order: 1 (initial), 2, 3


def test_search_accepts_by_the_configured_rule_like_the_loop(tmp_path):
    # the grid's factor 2 gains on every val example; a threshold between the paired
    # interval's lower end and the mean gain passes the mean rule but not the bootstrap rule
    grid = ["optimizer=search", "optimizer.budget_system_runs=20", "optimizer.options.method=grid"]
    path, _ = run_linear(tmp_path / "probe", *grid)
    paired = history(path)[1]["decision"]["paired"]
    assert paired["wins"] == 10 and paired["low"] < paired["mean"]
    threshold = f"optimizer.accept_threshold={(paired['low'] + paired['mean']) / 2}"
    path, _ = run_linear(tmp_path / "mean", *grid, threshold)
    assert history(path)[1]["accepted"] and final_state(path) == {"scale": {"factor": 2}}
    path, _ = run_linear(tmp_path / "boot", *grid, threshold, "optimizer.accept_rule=bootstrap")
    step = history(path)[1]
    assert not step["accepted"] and step["decision"]["rule"] == "bootstrap"
    assert final_state(path) == {"scale": {"factor": 1}}


def test_search_budget_below_one_validation_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"optimizer.budget_system_runs=5 does not cover"):
        run_linear(tmp_path, "optimizer=search", "optimizer.budget_system_runs=5")


BAD_OPTIONS = [  # (baseline, override, the key and value the error must name)
    ("search", "optimizer.options.method=sideways", "method: bad value 'sideways'"),
    ("search", "optimizer.options.num_candidates=0", "num_candidates: bad value 0"),
    ("search", "optimizer.options.seed='7'", "seed: bad value '7'"),  # no silent coercion
    ("llmselector", "optimizer.options.max_rounds=0", "max_rounds: bad value 0"),
    ("llmselector", "optimizer.options.components=exclaim", "components: bad value 'exclaim'"),
    ("textgrad", "optimizer.options.temperature=-1", "temperature: bad value -1"),
    ("textgrad", "optimizer.options.constraints=[1]", "constraints.0: bad value 1"),
    ("mipro", "optimizer.options.adapter=xml", "adapter: bad value 'xml'"),
    ("mipro", "optimizer.options.num_candidates=1", "num_candidates: bad value 1"),
    ("gepa", "optimizer.options.use_merge=maybe", "use_merge: bad value 'maybe'"),
]


@pytest.mark.parametrize("baseline", ["search", "llmselector", "textgrad", "mipro", "gepa"])
def test_unknown_option_is_refused_when_the_config_loads(tmp_path, baseline):
    with pytest.raises(ConfigError, match=rf"^optimizer\.options\.typo: unknown option for the "
                                          rf"'{baseline}' baseline \(known: \w+"):
        load_checked(LINEAR, [f"run_root={tmp_path}", f"optimizer={baseline}",
                              "+optimizer.options.typo=1"])


@pytest.mark.parametrize("baseline,option,named", BAD_OPTIONS, ids=[b[2].split(":")[0] + "-" + b[0]
                                                                    for b in BAD_OPTIONS])
def test_bad_option_value_names_the_key_and_value(tmp_path, baseline, option, named):
    with pytest.raises(ConfigError, match=rf"^optimizer\.options\.{re.escape(named)} for the "
                                          rf"'{baseline}' baseline \(.+\)$"):
        load_checked(LINEAR, [f"run_root={tmp_path}", f"optimizer={baseline}", option])


def test_search_resume_replays_history_without_evaluating_again(tmp_path):
    composed = load(LINEAR, [f"run_root={tmp_path}", "optimizer=search",
                             "optimizer.budget_system_runs=20"])
    path, _ = execute("update", composed, show_progress=False)
    assert len(history(path)) == 2  # initial + one candidate, then the budget ran out
    first = history(path)
    # resume with a larger budget: record 1 is replayed, then the search goes on
    composed = load(LINEAR, [f"resume={path}", "optimizer=search",
                             "optimizer.budget_system_runs=30"])
    _, summary = execute("run", composed, show_progress=False)
    hist = history(path)
    assert hist[:2] == first and len(hist) == 3
    assert hist[2]["system_runs"] == 30  # 20 from the first process + one evaluation
    assert {h["candidate"]["scale"]["factor"] for h in hist[1:]} == {2, 3}
    assert summary["test"]["final"]["mean"] == 1.0


# ---------------------------------------------------------------- llmselector


def test_llmselector_changes_one_model_at_a_time_and_keeps_the_best(tmp_path, scripted_lm):
    lm = scripted_lm(component_script)
    path, summary = run_with(lm, WORDS, tmp_path, "optimizer=llmselector",
                             "optimizer.budget_system_runs=40")
    hist = history(path)
    check_format(hist, 40)
    assert hist[0]["val"]["mean"] == 0.5  # smollm2 twice: 'apple!'
    for h in hist[1:]:
        (comp, values), = h["candidate"].items()  # exactly one component ...
        assert list(values) == ["model"]  # ... and one variable changed
        assert h["round"] >= 1 and h["variable"] == f"{comp}.model"
    assert [(h["component"], h["candidate"][h["component"]]["model"], h["accepted"])
            for h in hist[1:]] == [("upper", GEMMA, True), ("exclaim", GEMMA, False)]
    # round 2 would only re-try states already scored: nothing left, so it stops
    state = final_state(path)
    assert state["upper"]["model"] == GEMMA and state["exclaim"]["model"] == SMOL
    assert summary["test"]["final"]["mean"] == 1.0
    models = {r.model for _, r in lm.requests}
    assert models == {SMOL, GEMMA}


def test_llmselector_respects_the_budget(tmp_path, scripted_lm):
    # val has 4 examples: 8 runs = the initial evaluation and one candidate
    path, _ = run_with(scripted_lm(component_script), WORDS, tmp_path, "optimizer=llmselector",
                       "optimizer.budget_system_runs=10")
    hist = history(path)
    check_format(hist, 10)
    assert len(hist) == 2


def test_llmselector_needs_a_model_variable(tmp_path):
    with pytest.raises(ConfigError, match="no component of this system has a `model` variable"):
        run_linear(tmp_path, "optimizer=llmselector")


# ---------------------------------------------------------------- textgrad


def test_textgrad_updates_an_instruction_through_the_textgrad_package(tmp_path, scripted_lm):
    lm = scripted_lm(textgrad_script(
        "<IMPROVED_VARIABLE>Write the word in capital letters.</IMPROVED_VARIABLE>"))
    path, summary = run_with(lm, WORDS, tmp_path, "optimizer=textgrad",
                             "optimizer.options.steps=2", "optimizer.options.batch_size=2",
                             "optimizer.budget_system_runs=40")
    hist = history(path)
    check_format(hist, 40)
    step = hist[1]
    assert step["component"] == "upper" and step["accepted"]
    assert step["val_before"] == 0.5 and step["val_after"] == 1.0
    assert step["candidate"] == {"upper": {"prompt": {
        "instruction": "Write the word in capital letters.", "demos": []}}}
    assert step["textgrad"]["updates"]["exclaim"]["status"] == "same as before"
    assert final_state(path)["upper"]["prompt"]["instruction"] == "Write the word in capital letters."
    assert summary["test"]["final"]["mean"] == 1.0
    # every textgrad call went through our LM, tagged by phase
    tags = {c for c, _ in lm.requests if c.startswith("textgrad/")}
    assert tags == {"textgrad/loss", "textgrad/backward", "textgrad/optimizer"}
    # textgrad's backward reached the upstream instruction through the exclaim step
    steps = [json.loads(x) for x in (path / "textgrad/steps.jsonl").read_text().splitlines()]
    assert "capital letters" in steps[0]["feedback"]["upper"]
    stats = json.loads((path / "textgrad/stats.json").read_text())
    assert stats["parsed"] >= 2 and stats["no_tags"] == 0


# TGD replies seen from the embedded models (see optimas_cli/methods/textgrad.py): no tags
# at all (smollm2), or TGD's own instructions parroted, which textgrad's parser takes as the new
# instruction (gemma3-270m).
PARROT = ("This is very important: You MUST give your response by sending the improved "
          "variable between the <IMPROVED_VARIABLE> tags, and nothing else. The text you send")
BAD_REPLIES = [
    ("The improved variable is the text within the following span:", "no_tags",
     "no <IMPROVED_VARIABLE> tags"),
    (PARROT, "unclosed", "no </IMPROVED_VARIABLE> after the opening tag"),
    ("You MUST give your response by sending the improved variable between "
     "<IMPROVED_VARIABLE> {the improved variable} </IMPROVED_VARIABLE> tags.", "copied",
     "copied from TextGrad's own instructions"),
]


@pytest.mark.parametrize("reply,counter,status", BAD_REPLIES, ids=[b[1] for b in BAD_REPLIES])
def test_textgrad_fails_explicitly_when_tgd_replies_are_unusable(tmp_path, scripted_lm, reply,
                                                                 counter, status):
    from optimas_cli.methods.textgrad_replies import TextGradFailure

    lm = scripted_lm(textgrad_script(reply))
    composed = load(WORDS, [f"run_root={tmp_path}", "optimizer=textgrad",
                            "optimizer.options.steps=2", "optimizer.options.batch_size=1",
                            "optimizer.options.components=[upper]"])
    rd = RunDir.create(composed)
    with pytest.raises(TextGradFailure, match=r"produced no usable instruction .*of 2 TGD "
                                              r"optimizer replies"):
        run_loop(build_runtime(composed, lm=lm), rd, show_progress=False)
    hist = history(rd.path)
    assert len(hist) == 3 and not any(h["changed"] for h in hist[1:])
    assert hist[-1]["state"] == hist[0]["state"]  # nothing was evaluated or kept
    assert hist[-1]["system_runs"] == 4 + 2  # initial val, then one train example per step
    upd = hist[1]["textgrad"]["updates"]["upper"]
    assert upd["status"] == status and upd["reply"] == reply
    stats = json.loads((rd.path / "textgrad/stats.json").read_text())
    assert (stats["tgd_calls"], stats["parsed"], stats[counter]) == (2, 0, 2)


def test_textgrad_needs_a_prompt_variable(tmp_path):
    with pytest.raises(ConfigError, match="no component of this system has a `prompt` variable"):
        run_linear(tmp_path, "optimizer=textgrad")


class RealOptimizerLM:
    """TGD's optimizer calls go to the real embedded model; every other call is scripted."""

    def __init__(self, real, scripted):
        self.real, self.scripted = real, scripted

    def complete(self, request, *, component: str = ""):
        if component == "textgrad/optimizer":
            return self.real.complete(request, component=component)
        return self.scripted.complete(request, component=component)

    def usage_summary(self) -> dict:
        return self.scripted.usage_summary()


@pytest.mark.slow
@pytest.mark.parametrize("model", [SMOL, GEMMA])
def test_textgrad_with_an_embedded_model_as_tgd_optimizer(tmp_path, scripted_lm, model):
    """A real TGD step by an embedded model, fed a useful scripted gradient.

    The project's documented behaviour (README, methods/textgrad.py): neither
    SmolLM2-135M nor Gemma-3-270M answers in TGD's format, so the run fails with
    TextGradFailure and counts, never carries on or falls back; the recorded status is
    our classification of the real reply. (Should an embedded model ever follow the
    format, this test fails, and so does the README's claim: update both.)
    """
    from optimas_cli.lm import LMClient
    from optimas_cli.methods.textgrad import _tgd_template
    from optimas_cli.methods.textgrad_replies import FAILURES, TextGradFailure, reply_problem

    composed = load(WORDS, [f"run_root={tmp_path}", "optimizer=textgrad",
                            f"optimizer.options.engine_model={model}",
                            "optimizer.options.steps=1", "optimizer.options.batch_size=1",
                            "optimizer.options.components=[upper]",
                            "optimizer.options.max_tokens=96"])
    lm = RealOptimizerLM(LMClient(composed.run.lm), scripted_lm(textgrad_script("unused")))
    rd = RunDir.create(composed)
    with pytest.raises(TextGradFailure, match=rf"no usable instruction with engine model "
                                              rf"'{model}': of 1 TGD optimizer replies"):
        run_loop(build_runtime(composed, lm=lm), rd, show_progress=False)
    stats = json.loads((rd.path / "textgrad/stats.json").read_text())
    assert stats["parsed"] == 0 and stats["tgd_calls"] == 1
    hist = history(rd.path)
    assert len(hist) == 2 and not hist[1]["changed"] and hist[1]["state"] == hist[0]["state"]
    status = hist[1]["textgrad"]["updates"]["upper"]["status"]
    step = json.loads((rd.path / "textgrad/steps.jsonl").read_text().splitlines()[0])
    upd = step["updates"]["upper"]  # in full (history.jsonl keeps 500 characters)
    assert status == upd["status"] and status in FAILURES and upd["reply"]
    assert reply_problem(upd["reply"], upd.get("parsed_by_textgrad", ""), _tgd_template()) == status
    print(f"{model}: {status}: {upd['reply'][:300]!r}")  # shown with -rP


def test_a_resume_that_proposes_otherwise_names_the_line_of_history(tmp_path):
    composed = load(LINEAR, [f"run_root={tmp_path}", "optimizer=search",
                             "optimizer.budget_system_runs=20"])
    path, _ = execute("update", composed, show_progress=False)
    assert history(path)[1]["candidate"] == {"scale": {"factor": 2}}
    # a blank line before the second record: the message counts lines, not records
    lines = (path / "history.jsonl").read_text().splitlines()
    (path / "history.jsonl").write_text("\n".join([lines[0], "", *lines[1:]]) + "\n")
    changed = load(LINEAR, [f"resume={path}", "optimizer=search", "optimizer.budget_system_runs=30",
                            "system.components.scale.variables.factor.choices=[1,3]"])
    with pytest.raises(ConfigError, match=rf"^resume: {path / 'history.jsonl'} line 3 tried "
                                          r"\{'scale': \{'factor': 2\}\}, but this run proposes"):
        execute("run", changed, show_progress=False)
