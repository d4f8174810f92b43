"""DSPy integration: the LM bridge, component <-> Predict, DSPy prompt optimizers, MIPROv2/GEPA baselines.

Fast tests use a scripted LM on a tiny system ("shout": an llm component that
repeats a word, loudly only if its instruction says UPPER, then a python step
adding "!"), so the best instruction is known. Slow tests run the MIPROv2 and
GEPA baselines end to end on the embedded model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import dspy
import pytest
import yaml

from optimas_cli.config import ConfigError, load
from optimas_cli.dspy.adapters import ComponentAdapter, MetaCompletionAdapter
from optimas_cli.dspy.budget import DSPyOptimizerError
from optimas_cli.dspy.lm import OptimasLM, sample_index_of, task_lm
from optimas_cli.dspy.predict import component_predict, llm_component, prompt_value
from optimas_cli.dspy.program import SystemProgram
from optimas_cli.lm import BudgetExceeded, LMClient, LMConfig, LMRequest
from optimas_cli.methods import run_method
from optimas_cli.run_dir import RunDir
from optimas_cli.runtime import build_runtime
from optimas_cli.schema import UpdateConfig

# DSPy 3.4 deprecates BaseLM.forward() plugins (kept on purpose, see optimas_cli/dspy/__init__.py)
pytestmark = pytest.mark.filterwarnings("ignore:Implementing custom LMs:DeprecationWarning")

WORDS = ["apple", "berry", "cedar", "delta", "ember", "fjord", "grape", "heron", "igloo", "jolly",
         "kiwi", "lemon", "mango", "noble"]
UPPER = "Write the text in UPPER case."


# ---------------------------------------------------------------- the tiny system


def load_shout(cfg):
    from optimas_cli.data import Dataset, Example

    return Dataset(examples=[Example(id=w, inputs={"text": w}, target={"out": w.upper() + "!"})
                             for w in WORDS])


def shout_metric(example, fields) -> dict:
    return {"score": float(fields.get("out") == example.target["out"])}


def exclaim(loud: str) -> str:
    return loud + "!"


SHOUT_YAML = """
defaults:
  - lm: smollm2
  - optimizer: {optimizer}
  - reward: minilm
  - _self_
name: shout
system:
  name: shout
  inputs: [text]
  final_output: out
  loader: test_dspy:load_shout
  metric: test_dspy:shout_metric
  components:
    shout:
      kind: llm
      description: Repeats the text loudly.
      inputs: [text]
      outputs: [loud]
      params: {{max_tokens: 8}}
      variables:
        prompt:
          type: prompt
          instruction: Repeat the text.
          demos: [{{text: hi, loud: hi}}]
    finish:
      kind: python
      description: Adds an exclamation mark.
      inputs: [loud]
      outputs: [out]
      params: {{function: "test_dspy:exclaim"}}
data: {{train_size: 6, val_size: 4, test_size: 4}}
eval: {{workers: 1}}
"""


def shout_config(tmp_path: Path, optimizer: str = "none", *overrides: str):
    path = tmp_path / "shout.yaml"
    path.write_text(SHOUT_YAML.format(optimizer=optimizer))
    return load(path, [f"run_root={tmp_path / 'runs'}", *overrides])


def query_text(prompt: str) -> str:
    return re.findall(r"^Text: (.*)$", prompt, flags=re.MULTILINE)[-1]


def shout_script(proposal: str = UPPER):
    """The 'model': the component repeats the text (upper-cased if the instruction says UPPER);
    every other prompt (DSPy's proposers, reflection) gets `proposal`."""

    def script(req: LMRequest) -> str:
        if req.prompt is not None and req.prompt.rstrip().endswith("Loud:"):  # the component
            instruction = req.prompt.split("\n\n")[0]
            text = query_text(req.prompt)
            return text.upper() if "UPPER" in instruction else text
        if req.messages and "[[ ## loud ## ]]" in req.messages[0][1]:  # ChatAdapter, task
            instruction = req.messages[0][1]
            text = query_text(req.messages[-1][1].replace("[[ ## text ## ]]\n", "Text: "))
            value = text.upper() if UPPER in instruction else text
            return f"[[ ## loud ## ]]\n{value}\n\n[[ ## completed ## ]]"
        return proposal

    return script


@pytest.fixture
def shout_rt(tmp_path, scripted_lm):
    def make(optimizer: str = "none", *overrides: str, proposal: str = UPPER):
        lm = scripted_lm(shout_script(proposal))
        composed = shout_config(tmp_path, optimizer, *overrides)
        return build_runtime(composed, lm=lm), lm

    return make


def history_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- OptimasLM


def mock_client(tmp_path, responses, **cfg) -> tuple[LMClient, list]:
    """An LMClient whose API calls go to litellm with mock_response (no network)."""
    from optimas_cli.lm.api import ApiEngine

    calls = []

    def extra(request, attempt):
        calls.append(request)
        return {"mock_response": responses(request)}

    config = LMConfig(model="openai/gpt-4o-mini", cache={"mode": "on", "dir": str(tmp_path / "c")}, **cfg)
    return LMClient(config, api=ApiEngine(config, sleep=lambda s: None, extra_kwargs=extra)), calls


def test_bridge_goes_through_our_cache_and_accounting(tmp_path):
    client, calls = mock_client(tmp_path, lambda r: "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]")
    lm = OptimasLM(client, "openai/gpt-4o-mini", component="dspy/qa")
    qa = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        first = qa(question="Capital of France?")
        again = qa(question="Capital of France?")
    assert first.answer == again.answer == "Paris"
    assert len(calls) == 1  # the second call was our cache's, not litellm's
    assert calls[0].is_chat and "Capital of France?" in calls[0].messages[-1][1]
    usage = client.usage_summary()["by_component"]["dspy/qa"]
    assert usage["calls"] == 1 and usage["cache_hits"] == 1 and usage["prompt_tokens"] > 0
    assert dspy.settings.lm is None  # nothing configured globally


def test_bridge_maps_samples_rollouts_and_settings_to_distinct_requests(scripted_lm):
    seen = scripted_lm(lambda r: f"s{r.sample_index}")
    lm = OptimasLM(seen, "local/x", component="dspy/t", max_tokens=33)
    assert lm("hi", n=3, temperature=0.7, stop=["END"]) == ["s0", "s1", "s2"]
    reqs = [r for _, r in seen.requests]
    assert {r.sample_index for r in reqs} == {0, 1, 2}
    assert all(r.max_tokens == 33 and r.stop == ("END",) and r.temperature == 0.7 for r in reqs)
    assert reqs[0].messages == (("user", "hi"),) and all(c == "dspy/t" for c, _ in seen.requests)
    seen.requests.clear()
    assert lm("hi", n=3, temperature=0.0) == ["s0"] * 3  # greedy: one request, three copies
    assert len(seen.requests) == 1
    seen.requests.clear()
    lm.copy(rollout_id=5, temperature=1.0)("hi")
    lm.copy(rollout_id=6, temperature=1.0)("hi")
    assert [r.sample_index for _, r in seen.requests] == [sample_index_of(5, 0), sample_index_of(6, 0)]
    assert sample_index_of(5, 0) != sample_index_of(6, 0) != sample_index_of(None, 0)
    import copy

    clone = copy.deepcopy(lm)  # DSPy deep-copies programs: the client is shared, never copied
    assert clone.client is seen


def test_budget_exceeded_inside_dspy_is_not_swallowed(tmp_path):
    client, _ = mock_client(tmp_path, lambda r: "[[ ## answer ## ]]\nx\n\n[[ ## completed ## ]]",
                            max_calls=1)
    lm = OptimasLM(client, "openai/gpt-4o-mini")
    qa = dspy.Predict("question -> answer")
    devset = [dspy.Example(question=f"q{i}", answer="x").with_inputs("question") for i in range(3)]
    with dspy.context(lm=lm):  # DSPy's Evaluate turns exceptions into failed examples ...
        dspy.Evaluate(devset=devset, metric=lambda e, p, t=None: 1.0, num_threads=1,
                      display_progress=False, max_errors=100)(qa)
    assert isinstance(lm.budget_error, BudgetExceeded)  # ... the bridge remembers it
    with pytest.raises(BudgetExceeded, match="max_calls=1"):
        lm.raise_if_over_budget()


# ---------------------------------------------------------------- components <-> predictors


def test_component_predict_round_trip(shout_rt):
    rt, _ = shout_rt()
    comp = llm_component(rt.system, "shout")
    value = {"instruction": "Say it.", "demos": [{"text": "a", "loud": "A"}, {"text": "b", "loud": "B"}]}
    pred = component_predict(comp, value)
    assert pred.signature.instructions == "Say it."
    assert list(pred.signature.input_fields) == ["text"] and list(pred.signature.output_fields) == ["loud"]
    assert [d.toDict() for d in pred.demos] == value["demos"]
    assert prompt_value(pred, comp) == value
    # an optimized predictor: new instruction, a demo lacking a field (dropped), a duplicate, a cap
    pred.signature = pred.signature.with_instructions("Shout it.")
    pred.demos = [dspy.Example(text="c", loud="C", augmented=True), dspy.Example(text="d"),
                  dspy.Example(text="c", loud="C"), dspy.Example(text="e", loud="E")]
    assert prompt_value(pred, comp, max_demos=2) == {
        "instruction": "Shout it.", "demos": [{"text": "c", "loud": "C"}, {"text": "e", "loud": "E"}]}
    with pytest.raises(ValueError, match="not an llm component"):
        llm_component(rt.system, "finish")


def test_system_program_sends_the_components_own_requests(shout_rt):
    rt, lm = shout_rt()
    program = SystemProgram(rt.system, rt.state)
    assert [n for n, _ in program.named_predictors()] == ["shout"]  # python steps are not predictors
    assert program.to_state() == rt.state
    with dspy.context(lm=task_lm(rt.system, rt.composed.run.lm)):
        pred = program(text="apple")
    assert pred.out == "apple!" and pred.loud == "apple"
    (tag, via_dspy), = lm.requests
    rt.system.run({"text": "apple"}, rt.state)
    (tag2, direct), = lm.requests[1:]
    assert via_dspy == direct  # byte-identical: one cache entry serves both
    assert (tag, tag2) == ("dspy/shout", "shout")
    assert rt.system.runs == 2


def test_system_program_chat_adapter_uses_dspy_format(shout_rt):
    rt, lm = shout_rt()
    state = {**rt.state, "shout": {"prompt": {"instruction": UPPER, "demos": []}}}
    program = SystemProgram(rt.system, state, adapter="chat")
    with dspy.context(lm=task_lm(rt.system, rt.composed.run.lm)):
        pred = program(text="berry")
    assert pred.out == "BERRY!"
    (_, req), = lm.requests
    assert req.is_chat and "[[ ## loud ## ]]" in req.messages[0][1] and req.stop == ()
    assert req.max_tokens == 8 + 32  # room for DSPy's markers


def test_run_counter_caps_dspy_system_runs(shout_rt):
    rt, _ = shout_rt()
    program = SystemProgram(rt.system, rt.state)
    program.counter.limit = 2
    with dspy.context(lm=task_lm(rt.system, rt.composed.run.lm)):
        program(text="a")
        program(text="b")
        with pytest.raises(RuntimeError, match="allowance"):
            program(text="c")
    assert (program.counter.used, program.counter.refused, rt.system.runs) == (2, 1, 2)


def test_meta_completion_adapter_round_trip():
    from dspy.teleprompt.copro_optimizer import BasicGenerateInstruction

    adapter = MetaCompletionAdapter()
    (msg,) = adapter.format(BasicGenerateInstruction, [], {"basic_instruction": "Answer."})
    assert msg["content"].endswith("Basic Instruction: Answer.\n\nProposed Instruction:")
    assert msg["content"].startswith(BasicGenerateInstruction.instructions)
    parsed = adapter.parse(BasicGenerateInstruction, " Be brief.\nProposed Prefix For Output Field: A:")
    assert parsed == {"proposed_instruction": "Be brief.", "proposed_prefix_for_output_field": "A:"}
    assert adapter.parse(BasicGenerateInstruction, "Only this.")["proposed_prefix_for_output_field"] == ""
    from dspy.utils.exceptions import AdapterParseError

    with pytest.raises(AdapterParseError):
        adapter.parse(BasicGenerateInstruction, "   ")


def test_component_adapter_parses_like_the_component(shout_rt):
    rt, _ = shout_rt()
    comp = llm_component(rt.system, "shout")
    adapter = ComponentAdapter(comp)
    pred = component_predict(comp, rt.state["shout"]["prompt"])
    (msg,) = adapter.format(pred.signature, pred.demos, {"text": "x"})
    assert msg["content"] == comp.render({"text": "x"}, "Repeat the text.", [{"text": "hi", "loud": "hi"}])["prompt"]
    assert adapter.parse(pred.signature, " Loud: X") == comp.parse(" Loud: X") == {"loud": "X"}


# ---------------------------------------------------------------- unparseable replies

GARBAGE = "}}{{ ## ?? <|im_end|> ::\nstill the same paragraph\n\nProposed Instruction: not this"


def proposer_call(lm: OptimasLM):
    """DSPy's own MIPROv2 instruction proposer (its real meta-prompt signature) on a tiny program."""
    from dspy.propose.grounded_proposer import GenerateModuleInstruction

    class Program(dspy.Module):
        def __init__(self):
            super().__init__()
            self.qa = dspy.Predict("question, context -> answer")

    program = Program()
    propose = GenerateModuleInstruction(program_code_string=None, use_dataset_summary=False,
                                        program_aware=False, use_task_demos=False,
                                        use_instruct_history=False, use_tip=True)
    with dspy.context(lm=lm, adapter=MetaCompletionAdapter()):
        return propose(demo_candidates=None, pred_i=0, demo_set_i=0, program=program,
                       previous_instructions="", data_summary="",
                       tip="Keep the instruction clear and concise.").proposed_instruction


def test_meta_completion_adapter_on_unparseable_proposer_replies(scripted_lm):
    """Documented in MetaCompletionAdapter: the meta-prompt goes out as a completion document;
    any text is taken up to its first blank line, whatever it looks like; a reply with no text
    raises DSPy's AdapterParseError naming the output field."""
    from dspy.utils.exceptions import AdapterParseError

    reply = {"text": GARBAGE}
    seen = scripted_lm(lambda r: reply["text"])
    lm = OptimasLM(seen, "local/smollm2-135m-instruct", temperature=1.0, max_tokens=120)
    assert proposer_call(lm) == "}}{{ ## ?? <|im_end|> ::\nstill the same paragraph"
    (_, req), = seen.requests
    assert req.prompt.endswith("\n\nProposed Instruction:") and not req.is_chat
    for blank in ("", "\n\n", "  \n \n\t"):
        reply["text"] = blank
        with pytest.raises(AdapterParseError, match="no text for the output field "
                                                    "'proposed_instruction'"):
            proposer_call(lm)


def test_mipro_proposer_reply_without_text_fails_explicitly(shout_rt):
    """Through the whole baseline: DSPy's failure becomes a DSPyOptimizerError naming the model,
    the field and the remedy (the completion adapter was already in use: no switch suggested)."""
    with pytest.raises(DSPyOptimizerError) as err:
        run_baseline(shout_rt, "mipro", "optimizer.budget_system_runs=40",
                     "optimizer.options.num_candidates=3", "optimizer.options.max_candidates=2",
                     proposal="\n\n")
    msg = str(err.value)
    assert msg.startswith("DSPy MIPROv2 failed with model 'local/smollm2-135m-instruct': "
                          "AdapterParseError: no text for the output field 'proposed_instruction'")
    assert msg.endswith("Set optimizer.options.prompt_model to a stronger model.")


def test_component_adapter_keeps_an_unparseable_reply_as_the_component_does(shout_rt, scripted_lm):
    """Documented in dspy/adapters.py: ComponentAdapter never fails on a reply; the field gets
    what the component's own parser makes of it, exactly as in System.run."""
    rt, _ = shout_rt()
    lm = scripted_lm(lambda r: GARBAGE)
    rt.system.lm = lm
    program = SystemProgram(rt.system, rt.state)
    with dspy.context(lm=task_lm(rt.system, rt.composed.run.lm)):
        pred = program(text="apple")
    direct = rt.system.run({"text": "apple"}, rt.state)
    assert direct.error is None and pred.loud == direct.fields["loud"] == GARBAGE.strip()
    assert pred.out == direct.fields["out"] == GARBAGE.strip() + "!"


# ---------------------------------------------------------------- one component: optimize_prompt_dspy


class StubLRF:
    """Local reward: 1 for an upper-case output, 0 otherwise."""

    def __init__(self):
        self.calls = 0

    def score(self, name, inputs_list, outputs_list):
        self.calls += 1
        return [1.0 if o["loud"].isupper() else 0.0 for o in outputs_list]


def shout_records(words):
    return [{"example_id": w, "component": "shout", "fields": {"text": w},
             "candidates": [{"outputs": {"loud": w}}, {"outputs": {"loud": w.upper()}}]} for w in words]


@pytest.mark.parametrize("method", ["mipro", "copro"])
def test_optimize_prompt_dspy_finds_the_instruction_the_local_reward_prefers(shout_rt, method):
    import random

    from optimas_cli.methods.optimas.updaters.common import UpdateContext
    from optimas_cli.methods.optimas.updaters.dspy_prompt import optimize_prompt_dspy

    rt, lm = shout_rt()
    cfg = UpdateConfig(prompt=method, num_candidates=2, per_component_train_size=4, max_demos=1)
    lrf = StubLRF()
    ctx = UpdateContext(rt.system, "shout", shout_records(WORDS[:6]), lrf, rt.state, cfg, rt.lm,
                        trust={"trusted": True})
    res = optimize_prompt_dspy(ctx, "prompt", random.Random(0))
    assert res["variable"] == "prompt" and res["type"] == "prompt"
    current = next(c for c in res["candidates"] if c["origin"] == "current")
    assert current["value"] == rt.state["shout"]["prompt"] and current["lrf"] == 0.0
    assert res["best"]["instruction"] == UPPER and res["decided_by"] == "local reward"
    best = next(c for c in res["candidates"] if c["value"] == res["best"])
    assert best["lrf"] == 1.0 and best["origin"] == method and best["dspy_score"] > 0.5
    assert len(best["scores"]) == 4  # scored by the LRF on per_component_train_size inputs, like OPRO
    tags = {t for t, _ in lm.requests}
    assert {"dspy/shout", "dspy/shout/proposer", "shout"} <= tags
    assert res["dspy"]["predictor_failures"] == 0


def test_the_optimas_update_step_runs_dspy_when_configured(shout_rt):
    from dataclasses import replace

    from optimas_cli.methods.optimas.update import update_component
    from optimas_cli.methods.optimas.updaters.common import UpdateContext
    from optimas_cli.schema import OptimizerConfig

    rt, _ = shout_rt()
    cfg = OptimizerConfig(update=UpdateConfig(prompt="copro", num_candidates=2, per_component_train_size=3))
    ctx = UpdateContext(rt.system, "shout", shout_records(WORDS[:3]), StubLRF(), rt.state,
                        cfg.update, rt.lm, seed=0, workers=cfg.collect.workers,
                        trust={"trusted": True})
    out = update_component(ctx, default_model=rt.composed.run.lm.model, prompt_history=[])
    assert out["state"]["shout"]["prompt"]["instruction"] == UPPER
    (var,) = out["variables"]
    assert var["dspy"]["optimizer"] == "copro" and {c["origin"] for c in var["candidates"]} == {
        "current", "copro"}
    # the same step with a head not trusted keeps the prompt and runs no DSPy
    untrusted = {"trusted": False, "reason": "accuracy 0.60 does not beat output_prior 0.58"}
    held = update_component(replace(ctx, trust=untrusted), default_model=rt.composed.run.lm.model,
                            prompt_history=[])
    assert held["state"]["shout"]["prompt"] == rt.state["shout"]["prompt"]
    (var,) = held["variables"]
    assert var["candidates"] == [] and "dspy" not in var and "output_prior" in var["held"]


def test_optimize_prompt_dspy_failure_of_dspys_format_is_explicit(shout_rt):
    import random

    from optimas_cli.methods.optimas.updaters.common import UpdateContext
    from optimas_cli.methods.optimas.updaters.dspy_prompt import optimize_prompt_dspy

    # what a tiny model does with DSPy's chat format (verbatim from SmolLM2-135M, see slow test)
    rt, _ = shout_rt(proposal="You have the perfect recipe for a JSON object in Python.")
    cfg = UpdateConfig(prompt="mipro", num_candidates=2, per_component_train_size=4, max_demos=0)
    with pytest.raises(DSPyOptimizerError, match="did not produce output DSPy's adapter could parse"):
        ctx = UpdateContext(rt.system, "shout", shout_records(WORDS[:4]), StubLRF(), rt.state,
                            cfg, rt.lm)
        optimize_prompt_dspy(ctx, "prompt", random.Random(0), adapter_for_proposer="dspy")


# ---------------------------------------------------------------- baselines


def run_baseline(shout_rt, optimizer, *overrides, proposal=UPPER):
    """`optimas run`'s work (the baseline, then the test evaluation) with the scripted LM."""
    from optimas_cli.jobs import run_command

    rt, lm = shout_rt(optimizer, *overrides, proposal=proposal)
    run_dir = RunDir.create(rt.composed)
    summary = run_command("run", rt, run_dir, False)
    return rt, lm, run_dir.path, summary


@pytest.mark.parametrize("optimizer,options", [
    ("mipro", ["optimizer.options.num_candidates=3", "optimizer.options.max_candidates=2"]),
    ("gepa", ["optimizer.options.max_candidates=2"]),
])
def test_baseline_finds_the_better_prompt_within_budget(shout_rt, optimizer, options):
    rt, lm, path, summary = run_baseline(shout_rt, optimizer, "optimizer.budget_system_runs=40", *options)
    history = history_of(path)
    assert history[0]["kind"] == "initial" and history[0]["val"]["mean"] == 0.0
    its = [h for h in history[1:] if h["kind"] == "iteration"]
    assert its and all(h["component"] in ("shout", "all") for h in its)
    assert any(h["accepted"] and h["val_after"] == 1.0 and h["val_before"] == 0.0 for h in its)
    for h in its:  # DSPy's own val score agrees with ours: DSPy scored the prompts the system sends
        if h["changed"]:
            assert h["dspy_val"] == pytest.approx(h["val_after"], abs=1e-4)  # DSPy rounds to 0.01%
    final = yaml.safe_load((path / "final/system.yaml").read_text())["state"]
    assert final["shout"]["prompt"]["instruction"] == UPPER
    assert summary["optimizer"] == optimizer and summary["val"] == {"initial": 0.0, "final": 1.0}
    assert summary["test"]["final"]["mean"] == 1.0 and summary["test_improvement"] == 1.0
    runs_before_test = history[-1]["system_runs"]
    assert runs_before_test <= 40  # budget_system_runs held (the test evaluation comes after)
    assert (path / "val_score.png").exists()
    assert any(t == "dspy/shout" for t, _ in lm.requests)
    # resume: DSPy is not rerun, the same state comes back
    n = len(lm.requests)
    assert run_method(rt, RunDir(path)) == final and len(lm.requests) == n
    # killed after DSPy's compile, before its programs' first record: the resume evaluates the
    # programs the compile found (kept in <optimizer>_found.json) and does not compile again,
    # which could not resume and would count its runs twice
    (path / "history.jsonl").write_text(json.dumps(history[0]) + "\n")
    rt.budget.system_runs = its[0]["system_runs"] - len(rt.splits["val"])  # spent when killed
    assert run_method(rt, RunDir(path)) == final
    assert not [t for t, _ in lm.requests[n:] if t.startswith("dspy/")]  # no DSPy call
    again = history_of(path)
    assert [h["val_after"] for h in again[1:]] == [h["val_after"] for h in its]


@pytest.mark.parametrize("optimizer,options", [
    ("mipro", ["optimizer.options.num_candidates=3", "optimizer.options.max_candidates=2"]),
    ("gepa", ["optimizer.options.max_candidates=2"]),
])
def test_baseline_proposes_with_the_configs_proposer_model(shout_rt, optimizer, options):
    """Without a model of its own, the DSPy proposer (MIPRO) or reflection LM (GEPA) is
    optimizer.update.proposer_model, the one Optimas's OPRO proposes with: equal footing."""
    gemma = "local/gemma3-270m"
    _, lm, _, _ = run_baseline(shout_rt, optimizer, "optimizer.budget_system_runs=40",
                               f"optimizer.update.proposer_model={gemma}", *options)
    proposer = {r.model for tag, r in lm.requests if tag.startswith("dspy/") and tag != "dspy/shout"}
    task = {r.model for tag, r in lm.requests if tag == "dspy/shout"}
    assert proposer == {gemma} and gemma not in task


def test_mipro_baseline_refuses_a_budget_too_small_before_any_work(shout_rt):
    rt, lm = shout_rt("mipro", "optimizer.budget_system_runs=10")
    with pytest.raises(ConfigError, match=r"optimizer.budget_system_runs=10 is too small for mipro: "
                                          r"it needs at least \d+"):
        run_method(rt, RunDir.create(rt.composed))
    assert lm.requests == [] and rt.system.runs == 0


@pytest.mark.parametrize("optimizer,options", [
    ("mipro", ["optimizer.options.num_candidates=3", "optimizer.options.max_candidates=2"]),
    ("gepa", ["optimizer.options.max_candidates=2"]),
])
def test_a_compile_killed_midway_is_named_when_the_budget_left_is_too_small(shout_rt, optimizer,
                                                                            options):
    rt, lm, path, _ = run_baseline(shout_rt, optimizer, "optimizer.budget_system_runs=40", *options)
    history = history_of(path)
    # killed inside DSPy's compile: the initial record on disk, no programs found, 30 runs spent
    (path / "history.jsonl").write_text(json.dumps(history[0]) + "\n")
    (path / f"{optimizer}_found.json").unlink()
    rt.budget.system_runs = 30
    lost = 30 - history[0]["system_runs"]
    with pytest.raises(ConfigError, match=rf"{optimizer}: an earlier process .* killed inside "
                                          rf"DSPy's compile, .* the {lost} system runs it spent"):
        run_method(rt, RunDir(path))
    rt.budget.system_runs = history[0]["system_runs"]  # nothing lost, too small a budget: the plain one
    rt.budget.limit = history[0]["system_runs"] + 5
    with pytest.raises(ConfigError, match="is too small") as err:
        run_method(rt, RunDir(path))
    assert "killed" not in str(err.value)


def test_gepa_reflection_in_dspys_format_fails_explicitly(shout_rt):
    with pytest.raises(DSPyOptimizerError, match="produced no usable instruction"):
        run_baseline(shout_rt, "gepa", "optimizer.budget_system_runs=40",
                     "optimizer.options.proposer_adapter=dspy", "optimizer.options.max_candidates=2",
                     proposal="Here is a Python function that prints the instruction.")


def test_mipro_proposer_in_dspys_format_fails_explicitly(shout_rt):
    with pytest.raises(DSPyOptimizerError, match=r"(?s)MIPROv2 failed .* did not produce output "
                                                 r"DSPy's adapter could parse.*proposer_adapter=completion"):
        run_baseline(shout_rt, "mipro", "optimizer.budget_system_runs=40",
                     "optimizer.options.proposer_adapter=dspy", "optimizer.options.num_candidates=3",
                     "optimizer.options.max_candidates=2",
                     proposal="You have the perfect recipe for a JSON object in Python.")


# ---------------------------------------------------------------- the embedded model (slow)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["mipro", "gepa"])
def test_baseline_runs_on_the_embedded_model_within_budget(tmp_path, optimizer):
    """The real model end to end on the tiny system: DSPy runs, history is well formed, the budget
    holds, and DSPy's val score of each program equals ours (same prompts, same cache entries)."""
    from optimas_cli.jobs import execute

    composed = shout_config(tmp_path, optimizer, "optimizer.budget_system_runs=30",
                            "optimizer.options.max_candidates=2", "lm.local.n_threads=1",
                            "data.train_size=4", "data.val_size=3", "data.test_size=3",
                            *(["optimizer.options.num_candidates=3"] if optimizer == "mipro" else []))
    path, summary = execute("run", composed, show_progress=False)
    history = history_of(path)
    assert history[0]["kind"] == "initial" and len(history) >= 2
    assert all(h["kind"] == "iteration" for h in history[1:])
    assert history[-1]["system_runs"] <= 30
    for h in history[1:]:
        if h["changed"]:
            assert h["dspy_val"] == pytest.approx(h["val_after"], abs=1e-4)  # DSPy rounds to 0.01%
    assert summary["optimizer"] == optimizer and (path / "final/system.yaml").exists()
    usage = summary["lm"]
    assert usage["calls"] > 0
