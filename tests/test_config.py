"""Config composition and validation: every shipped config, overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from optimas_cli.config import PROJECT_CONFIGS, ConfigError, load, redact

RUN_CONFIGS = sorted(p for p in PROJECT_CONFIGS.rglob("*.yaml")
                     if p.parent == PROJECT_CONFIGS or p.parent.name == "bench")
LM_OPTIONS = sorted(p.stem for p in (PROJECT_CONFIGS / "lm").glob("*.yaml"))
HOTPOT = PROJECT_CONFIGS / "hotpotqa.yaml"


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(PROJECT_CONFIGS)))
def test_every_shipped_run_config_validates(path: Path):
    composed = load(path)
    assert composed.run.system.components


@pytest.mark.parametrize("option", LM_OPTIONS)
def test_every_lm_option_composes(option: str):
    composed = load(HOTPOT, [f"lm={option}"])
    assert composed.choices["lm"] == option
    # model variables follow the group's default model through interpolation
    model_var = composed.run.system.components["answer_generator"].variables["model"]
    assert model_var.value == composed.run.lm.model


def test_overrides_set_add_and_delete():
    c = load(HOTPOT, ["data.test_size=7", "system.components.retriever.variables.k.value=10",
                      "~eval.repeats", "+system.components.retriever.params.stemmer=null"])
    assert c.run.data.test_size == 7
    assert c.run.system.components["retriever"].variables["k"].value == 10
    assert c.run.eval.repeats == 1  # deleted -> schema default
    assert c.run.system.components["retriever"].params["stemmer"] is None


def test_unknown_key_names_key_and_file(write_yaml):
    cfg = write_yaml("my.yaml", "defaults:\n  - lm: smollm2\n  - system: hotpotqa\n  - _self_\n"
                                "name: x\ndata:\n  test_sise: 3\n")
    with pytest.raises(ConfigError) as e:
        load(cfg)
    msg = str(e.value)
    assert "unknown key 'data.test_sise'" in msg and str(cfg) in msg


def test_unknown_key_in_group_file_names_that_file(tmp_path, write_yaml):
    write_yaml("lm/bad.yaml", "model: local/smollm2-135m-instruct\nchoices: []\ntemprature: 0.5\n")
    cfg = write_yaml("run.yaml", "defaults:\n  - lm: bad\n  - system: hotpotqa\n  - _self_\nname: x\n")
    with pytest.raises(ConfigError) as e:
        load(cfg)
    assert "unknown key 'lm.temprature'" in str(e.value)
    assert str(tmp_path / "lm" / "bad.yaml") in str(e.value)


def test_broken_interpolation_names_the_key(write_yaml):
    write_yaml("lm/nochoices.yaml", "model: local/smollm2-135m-instruct\n")
    cfg = write_yaml("run.yaml", "defaults:\n  - lm: nochoices\n  - system: hotpotqa\n  - _self_\n"
                                 "name: x\n")
    with pytest.raises(ConfigError) as e:
        load(cfg)
    assert "lm.choices" in str(e.value) and "variables.model.choices" in str(e.value)


def test_wrong_type_names_key_value_and_override():
    with pytest.raises(ConfigError) as e:
        load(HOTPOT, ["data.test_size=many"])
    msg = str(e.value)
    assert "data.test_size" in msg and "'many'" in msg and "data.test_size=many" in msg


def test_missing_required_value(write_yaml):
    cfg = write_yaml("run.yaml", "defaults:\n  - lm: smollm2\n  - system: hotpotqa\n  - _self_\n")
    with pytest.raises(ConfigError, match="missing required value 'name'"):
        load(cfg)


def test_malformed_yaml_names_file_and_line(write_yaml):
    cfg = write_yaml("broken.yaml", "name: x\ndata:\n  test_size: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        load(cfg)
    assert f"{cfg}:" in str(e.value) and "malformed YAML" in str(e.value)


def test_missing_file_and_unknown_group_option():
    with pytest.raises(ConfigError, match="no such config file"):
        load("does/not/exist.yaml")
    with pytest.raises(ConfigError, match="lm"):
        load(HOTPOT, ["lm=nope"])


def test_bad_variable_space_is_refused():
    with pytest.raises(ConfigError, match="not among choices"):
        load(HOTPOT, ["system.components.retriever.variables.k.value=3"])


def test_config_from_any_directory_finds_project_groups(tmp_path, write_yaml):
    cfg = write_yaml("elsewhere/run.yaml",
                     "defaults:\n  - lm: gemma3\n  - system: hotpotqa\n  - _self_\nname: elsewhere\n")
    c = load(cfg)
    assert c.run.lm.model == "local/gemma3-270m"


def test_defaults_that_lead_back_to_an_earlier_file_are_refused(write_yaml):
    # mine/pubmedqa.yaml -> the project's bench/pubmedqa_ladder -> /pubmedqa, which is
    # mine/pubmedqa.yaml again (its directory is searched first): a cycle, not a RecursionError
    cfg = write_yaml("mine/pubmedqa.yaml",
                     "defaults:\n  - /bench/pubmedqa_ladder@_here_\n  - _self_\nname: x\n")
    with pytest.raises(ConfigError, match="form a cycle") as e:
        load(cfg)
    assert str(cfg) in str(e.value)


def test_a_config_that_names_itself_among_its_defaults_is_refused(write_yaml):
    # bench/hotpotqa.yaml extending /hotpotqa would load itself (its directory comes first)
    cfg = write_yaml("bench/hotpotqa.yaml", "defaults:\n  - /hotpotqa\n  - _self_\nname: x\n")
    with pytest.raises(ConfigError, match=r"defaults entry '/hotpotqa' names this file itself") as e:
        load(cfg)
    assert str(cfg) in str(e.value)


def test_redact_hides_secrets_only():
    data = {"lm": {"api_key": "sk-123", "model": "openai/x"}, "token": "", "list": [{"secret": "s"}]}
    out = redact(data)
    assert out["lm"]["api_key"] == "***" and out["lm"]["model"] == "openai/x"
    assert out["token"] == "" and out["list"][0]["secret"] == "***"


def test_a_reset_key_takes_the_schema_default_whether_or_not_the_yaml_spells_it(tmp_path):
    from optimas_cli.schema import RewardConfig

    # reward.epochs is left to the schema by configs/reward/minilm.yaml; data.test_size is set
    c = load(PROJECT_CONFIGS / "hotpotqa.yaml", ["~reward.epochs", "~data.test_size",
                                                 f"run_root={tmp_path}"])
    assert c.run.reward.epochs == RewardConfig().epochs
    assert c.run.data.test_size == 30  # the schema's, not hotpotqa.yaml's 100
