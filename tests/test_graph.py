"""The system graph: load-time checks, topological order, runs, traces and errors."""

from __future__ import annotations

import pytest

from optimas_cli.graph import System, build_components, check_graph, topological_order
from optimas_cli.schema import SystemConfig


def system_cfg(components: dict, inputs=("text",), final="out") -> SystemConfig:
    return SystemConfig.model_validate({
        "name": "t", "inputs": list(inputs), "final_output": final, "loader": "x:y", "metric": "x:y",
        "components": components})


def py(fn: str, inputs: list[str], outputs: list[str], **kw) -> dict:
    return {"kind": "python", "description": fn, "inputs": inputs, "outputs": outputs,
            "params": {"function": fn, **kw}}


def messages(cfg: SystemConfig) -> list[str]:
    return [m for _, m in check_graph(cfg)]


def test_sound_graph_has_no_problems_and_runs_in_dependency_order():
    cfg = system_cfg({
        "b": py("fns:shout", ["mid"], ["out"]),
        "a": py("fns:shout", ["text"], ["mid"]),
    })
    assert messages(cfg) == []
    assert topological_order(cfg) == ["a", "b"]


def test_cycle_is_refused():
    cfg = system_cfg({"a": py("fns:shout", ["y"], ["x"]), "b": py("fns:shout", ["x"], ["y"]),
                      "c": py("fns:shout", ["text"], ["out"])})
    # x and y have producers, so the only problem is the cycle itself
    assert any("cycle" in m and "a" in m and "b" in m for m in messages(cfg))


def test_input_nobody_produces_is_refused():
    cfg = system_cfg({"a": py("fns:shout", ["nowhere"], ["out"])})
    assert any("input 'nowhere' of component 'a' is produced by no component" in m
               for m in messages(cfg))


def test_output_produced_twice_is_refused():
    cfg = system_cfg({"a": py("fns:shout", ["text"], ["out"]), "b": py("fns:shout", ["text"], ["out"])})
    assert any("already produced by 'a'" in m for m in messages(cfg))


def test_unknown_kind_and_bad_variable_type_are_refused():
    cfg = system_cfg({"a": {"kind": "magic", "description": "", "inputs": ["text"], "outputs": ["out"]}})
    assert any("unknown component kind 'magic'" in m for m in messages(cfg))
    with pytest.raises(ValueError, match="type"):
        system_cfg({"a": {**py("fns:shout", ["text"], ["out"]),
                          "variables": {"v": {"type": "vibes", "value": 1}}}})
    cfg = system_cfg({"a": {**py("fns:shout", ["text"], ["out"]),
                            "variables": {"p": {"type": "prompt", "instruction": "x"}}}})
    assert any("cannot optimize a 'prompt' variable" in m for m in messages(cfg))


def test_unknown_param_of_a_kind_is_refused():
    cfg = system_cfg({"a": py("fns:shout", ["text"], ["out"], colour="red")})
    assert any("unknown param 'colour'" in m for m in messages(cfg))


def test_user_kind_by_dotted_path_runs():
    cfg = system_cfg({"a": {"kind": "fns:Reverse", "description": "", "inputs": ["text"],
                            "outputs": ["out"]}})
    assert messages(cfg) == []
    system = System(cfg, build_components(cfg, {}), lm=None)
    assert system.run({"text": "abc"}, {}).fields["out"] == "cba"


def test_run_records_trace_and_run_from_uses_upstream_context():
    cfg = system_cfg({
        "a": py("fns:shout", ["text"], ["mid"]),
        "b": {**py("fns:add", ["a_num", "b_num"], ["total"]),
              "variables": {"offset": {"type": "hyperparameter", "value": 1, "choices": [0, 1, 2]}}},
        "c": py("fns:shout", ["mid"], ["out"]),
    }, inputs=("text", "a_num", "b_num"))
    system = System(cfg, build_components(cfg, {}), lm=None)
    state = system.initial_state()
    assert state == {"b": {"offset": 1}}
    trace = system.run({"text": "hi", "a_num": 2, "b_num": 3}, state)
    assert trace.error is None
    assert [s.component for s in trace.steps] == ["a", "b", "c"]
    assert trace.fields["total"] == 6 and trace.fields["out"] == "HI"
    assert trace.steps[1].variables == {"offset": 1}
    # run from b with a different value, given a's output: a is not rerun
    sub = system.run_from("b", {"text": "hi", "a_num": 2, "b_num": 3, "mid": "HI"},
                          {"b": {"offset": 2}})
    assert [s.component for s in sub.steps] == ["b", "c"] and sub.fields["total"] == 7
    assert system.downstream("a") == ["b", "c"] and system.upstream("c") == ["a", "b"]


def test_failing_component_is_recorded_not_raised():
    cfg = system_cfg({"a": py("fns:boom", ["text"], ["mid"]), "b": py("fns:shout", ["mid"], ["out"])})
    system = System(cfg, build_components(cfg, {}), lm=None)
    trace = system.run({"text": "x"}, {})
    assert trace.error == "a: RuntimeError: tool exploded"
    assert len(trace.steps) == 1 and "out" not in trace.fields
