"""`optimas validate` checks what it can without running a model, and lists every problem:
the schemas, every dotted path, the loader's first example, the model names against their
choices; group overrides work on a user's config outside configs/."""

from __future__ import annotations

import sys

import pytest
import yaml
from typer.testing import CliRunner

from optimas_cli.cli import app
from optimas_cli.config import PROJECT_CONFIGS, ConfigError, load

runner = CliRunner()
HOTPOT = PROJECT_CONFIGS / "hotpotqa.yaml"

# a user's own config outside configs/: no defaults list, its own lm section
OWN = {
    "name": "own",
    "lm": {"model": "local/smollm2-135m-instruct", "choices": ["local/smollm2-135m-instruct"]},
    "system": {
        "name": "own", "inputs": ["x"], "final_output": "out",
        "loader": "fns:load_linear", "metric": "fns:linear_metric",
        "components": {
            "scale": {"kind": "python", "description": "x times a factor", "inputs": ["x"],
                      "outputs": ["y"], "params": {"function": "fns:scale"},
                      "variables": {"factor": {"type": "hyperparameter", "value": 1,
                                               "choices": [1, 2]}}},
            "finish": {"kind": "python", "description": "adds one", "inputs": ["y"],
                       "outputs": ["out"], "params": {"function": "fns:finish"}},
        },
    },
    "data": {"train_size": 5, "val_size": 5, "test_size": 5},
}


def _write(tmp_path, config: dict, name: str = "own.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _validate(path, *overrides):
    result = runner.invoke(app, ["validate", str(path), *overrides])
    return result.exit_code, " ".join(result.output.split()), result.output


def test_the_users_config_validates(tmp_path):
    code, out, _ = _validate(_write(tmp_path, OWN))
    assert code == 0 and "scale -> finish" in out


def test_every_problem_is_listed_each_naming_its_key(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(OWN))
    comps = config["system"]["components"]
    comps["scale"]["params"]["function"] = "fns:no_such_function"
    comps["finish"]["kind"] = "nopkg.kinds:Finish"
    config["system"]["metric"] = "fns:no_metric"
    config["data"]["test_sise"] = 3
    config["eval"] = {"workers": 0}
    code, out, raw = _validate(_write(tmp_path, config))
    assert code == 2
    assert "error: 5 problems:" in out and "more problem" not in out
    for key in ("system.components.scale.params.function", "system.components.finish.kind",
                "system.metric", "data.test_sise", "eval.workers"):
        assert key in out, key
    assert "fns:no_such_function" in out and "no attribute 'no_such_function'" in out
    assert len([line for line in raw.splitlines() if line.strip()]) == 6  # a line each


def test_a_python_functions_path_is_checked_on_its_own(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(OWN))
    config["system"]["components"]["finish"]["params"]["function"] = "nosuchmodule:finish"
    code, out, _ = _validate(_write(tmp_path, config))
    assert code == 2 and "error: 2 problems" not in out
    assert ("'system.components.finish.params.function': component 'finish': function "
            "'nosuchmodule:finish' cannot be used (cannot import module 'nosuchmodule'") in out


LOADERS = '''
from optimas_cli.data import Dataset, Example


def without_w(cfg):
    return Dataset(examples=[Example(id=f"r{i}", inputs={"x": i}, target={"out": 2 * i + 1})
                             for i in range(40)])


def a_list(cfg):
    return [Example(id="r0", inputs={"x": 0}, target={"out": 1})]


def broken(cfg):
    raise RuntimeError("the bucket is gone")
'''


@pytest.fixture
def loaders(tmp_path, monkeypatch):
    (tmp_path / "validate_loaders.py").write_text(LOADERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "validate_loaders", raising=False)
    return "validate_loaders"


def test_the_loader_is_read_once_and_a_missing_input_is_named(tmp_path, loaders):
    config = yaml.safe_load(yaml.safe_dump(OWN))
    config["system"]["inputs"] = ["x", "w"]
    config["system"]["loader"] = f"{loaders}:without_w"
    code, out, _ = _validate(_write(tmp_path, config))
    assert code == 2
    assert ("'system.inputs': the first example ('r0') of validate_loaders:without_w has no input "
            "'w' (its inputs: ['x'])") in out
    # the same config composes for a run: the data is read by the run itself
    assert load(tmp_path / "own.yaml").run.system.inputs == ["x", "w"]


def test_what_the_loader_returns_and_raises_is_named(tmp_path, loaders):
    config = yaml.safe_load(yaml.safe_dump(OWN))
    config["system"]["loader"] = f"{loaders}:a_list"
    code, out, _ = _validate(_write(tmp_path, config))
    assert code == 2 and "'system.loader': validate_loaders:a_list returned list; it must return " \
                         "a Dataset" in out
    config["system"]["loader"] = f"{loaders}:broken"
    code, out, _ = _validate(_write(tmp_path, config))
    assert code == 2 and "validate_loaders:broken raised RuntimeError: the bucket is gone" in out


def test_splits_larger_than_the_data_are_caught_and_blamed_on_the_override(tmp_path):
    code, out, _ = _validate(_write(tmp_path, OWN), "data.test_size=100")
    assert code == 2
    assert ("command-line override 'data.test_size=100': 'data': "
            "train_size+val_size+test_size = 110 but the dataset has only 40") in out
    assert "data: data" not in out


def test_lm_model_alone_gets_the_override_that_sets_model_and_choices_at_once(seed_data):
    with pytest.raises(ConfigError) as e:
        load(HOTPOT, ["lm.model=openai/gpt-4o-mini"])
    msg = str(e.value)
    assert msg.startswith("command-line override 'lm.model=openai/gpt-4o-mini': lm.model "
                          "'openai/gpt-4o-mini' is not in lm.choices")
    assert "\n" not in msg  # the four model variables that follow it: one problem
    assert "system.components.answer_generator.variables.model" in msg
    advice = "lm.model=openai/gpt-4o-mini 'lm.choices=[openai/gpt-4o-mini]'"
    assert f"set both at once: {advice}" in msg
    # the advice, as a shell would pass it, is a valid config
    c = load(HOTPOT, ["lm.model=openai/gpt-4o-mini", "lm.choices=[openai/gpt-4o-mini]"])
    assert {v.value for comp in c.run.system.components.values()
            for v in comp.variables.values() if v.type == "model"} == {"openai/gpt-4o-mini"}


def test_a_model_variable_outside_its_own_choices_is_named(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(OWN))
    config["system"]["components"]["scale"]["variables"]["m"] = {
        "type": "model", "value": "local/gemma3-270m", "choices": ["local/smollm2-135m-instruct"]}
    code, out, _ = _validate(_write(tmp_path, config))
    assert code == 2
    assert ("bad value for 'system.components.scale.variables.m': initial value "
            "'local/gemma3-270m' is not among choices ['local/smollm2-135m-instruct']") in out


@pytest.mark.parametrize("override,key,expected", [
    ("lm=openai", "lm", "openai/gpt-4o-mini"),
    ("optimizer=none", "optimizer", "none"),
])
def test_group_overrides_work_on_a_config_without_a_defaults_list(tmp_path, override, key,
                                                                   expected):
    c = load(_write(tmp_path, OWN), [override])
    assert c.choices[key] == override.split("=")[1]
    assert (c.run.lm.model if key == "lm" else c.run.optimizer.name) == expected
    # and on a config whose defaults list chooses the group already (the usual override)
    with_defaults = dict(OWN, defaults=["_self_", {"lm": "smollm2"}])
    assert load(_write(tmp_path, with_defaults, "d.yaml"), ["lm=gemma3"]).run.lm.model == \
        "local/gemma3-270m"


def test_a_group_sweep_runs_on_a_config_without_a_defaults_list(tmp_path):
    path = _write(tmp_path, OWN)
    result = runner.invoke(app, ["evaluate", str(path), "--multirun", f"run_root={tmp_path}",
                                 "lm=smollm2,gemma3"])
    assert result.exit_code == 0, result.output
    jobs = sorted(p for p in next((tmp_path / "own").iterdir()).iterdir() if p.is_dir())
    models = [yaml.safe_load((j / "config.yaml").read_text())["lm"]["model"] for j in jobs]
    assert models == ["local/smollm2-135m-instruct", "local/gemma3-270m"]


def test_of_repeated_overrides_of_a_key_the_last_one_is_blamed(tmp_path):
    """Hydra keeps the last of `key=a key=b`: the error names the override that set the value."""
    path = _write(tmp_path, OWN)
    code, out, _ = _validate(path, "data.test_size=4", "data.test_size=-1")
    assert code == 2
    assert out.startswith("error: command-line override 'data.test_size=-1': bad value for "
                          "'data.test_size': -1")
    code, out, _ = _validate(path, "data.test_size=-1", "data.test_size=4")
    assert code == 0, out  # the bad value was overridden: nothing to blame


@pytest.mark.parametrize("model,why", [
    ("local/does-not-exist", "no embedded model of that name (the local/ models: "
                             "local/gemma3-270m, local/qwen2.5-coder-0.5b-instruct, "
                             "local/qwen2.5-coder-1.5b-instruct, local/smollm2-135m-instruct)"),
    ("gpt-4o-mni", "litellm cannot tell its provider"),
])
def test_an_unknown_model_in_choices_is_named_with_its_key_not_asked_a_key_for(tmp_path, model,
                                                                                why, seed_data):
    config = yaml.safe_load(yaml.safe_dump(OWN))
    config["system"]["components"]["scale"]["variables"]["m"] = {
        "type": "model", "value": "local/smollm2-135m-instruct",
        "choices": ["local/smollm2-135m-instruct", model]}
    path = _write(tmp_path, config)
    code, out, _ = _validate(path)
    assert code == 2
    assert (f"error: {path}: 'system.components.scale.variables.m.choices': unknown model "
            f"{model!r}: {why}") in out
    # a run fails the same way, before a run directory or an API key comes into it
    result = runner.invoke(app, ["evaluate", str(path), f"run_root={tmp_path / 'runs'}", "-q"])
    assert result.exit_code == 2 and f"unknown model {model!r}" in result.output
    assert "Credentials" not in result.output and not (tmp_path / "runs").exists()
    # in lm.choices, through an override: the override is blamed, and the variables that
    # choose among lm.choices are named too
    code, out, _ = _validate(HOTPOT, f"lm.choices=[local/smollm2-135m-instruct,{model}]")
    assert code == 2 and out.startswith(
        f"error: command-line override 'lm.choices=[local/smollm2-135m-instruct,{model}]': "
        f"'lm.choices': unknown model {model!r} (also in system.components.")


def test_a_missing_data_file_is_said_once(tmp_path, monkeypatch):
    """Not once by data.path and again by the loader reading it; run from the project root,
    the two places a relative path is tried are one."""
    from optimas_cli.data import PROJECT_ROOT

    config = yaml.safe_load(yaml.safe_dump(OWN))
    config["system"]["loader"] = "optimas_cli.loaders.jsonl"
    config["data"] |= {"path": "no/such.jsonl", "inputs": {"x": "x"}}
    path = _write(tmp_path, config)
    monkeypatch.chdir(PROJECT_ROOT)
    code, out, _ = _validate(path)
    assert code == 2 and out == (
        f"error: {path}: bad value for 'data.path': 'no/such.jsonl' (data file not found (tried "
        f"{PROJECT_ROOT / 'no/such.jsonl'}))")
