"""`optimas options`: every knob of the run schema, generated from the pydantic models."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from optimas_cli.cli import app
from optimas_cli.config import PROJECT_CONFIGS
from optimas_cli.lm.config import CacheConfig, LMConfig, LocalEngineConfig
from optimas_cli.methods import method_options
from optimas_cli.schema import (
    OPTIMIZERS,
    CollectConfig,
    DataConfig,
    EvalConfig,
    LoraSpec,
    OptimizerConfig,
    RewardConfig,
    RunConfig,
    TrackingConfig,
    UpdateConfig,
    VariableConfig,
    WeightsUpdateConfig,
)

runner = CliRunner()
VAR = "system.components.<component>.variables.<variable>."

# prefix -> the model whose fields are the leaves right under it (sub-models walked apart)
MODELS: dict[str, type[BaseModel]] = {
    "": RunConfig,
    "lm.": LMConfig,
    "lm.cache.": CacheConfig,
    "lm.local.": LocalEngineConfig,
    "data.": DataConfig,
    "eval.": EvalConfig,
    "optimizer.": OptimizerConfig,
    "optimizer.collect.": CollectConfig,
    "optimizer.update.": UpdateConfig,
    "optimizer.update.weights.": WeightsUpdateConfig,
    "reward.": RewardConfig,
    "tracking.": TrackingConfig,
    VAR: VariableConfig,
    VAR + "lora.": LoraSpec,
}
# prefix -> its fields that hold a sub-model (walked, so no row of their own)
SUBMODELS = {"": {"lm", "system", "data", "eval", "optimizer", "reward", "tracking"},
             "lm.": {"cache", "local"}, "optimizer.": {"collect", "update"},
             "optimizer.update.": {"weights"}, VAR: {"lora"}}


def rows(*args: str) -> list[dict[str, str]]:
    result = runner.invoke(app, ["options", *args])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0].split("\t")
    out = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    assert out, result.stdout
    return out


@pytest.fixture(scope="module")
def everything() -> list[dict[str, str]]:
    return rows()


def schema_rows(all_rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    typed = [r for r in all_rows if not r["method"]]
    keys = [r["key"] for r in typed]
    assert len(keys) == len(set(keys)), "a schema key listed twice"
    return {r["key"]: r for r in typed}


def test_every_leaf_exactly_once(everything):
    by_key = schema_rows(everything)
    expected = set()
    for prefix, model in MODELS.items():
        expected |= {prefix + n for n in model.model_fields if n not in SUBMODELS.get(prefix, ())}
    expected |= {"system." + n for n in ("name", "description", "inputs", "final_output",
                                         "loader", "metric")}
    expected |= {"system.components.<component>." + n
                 for n in ("kind", "description", "inputs", "outputs", "params")}
    assert set(by_key) == expected


def test_defaults_are_the_models(everything):
    by_key = schema_rows(everything)
    assert by_key["optimizer.collect.num_inputs"]["default"] == "8"
    assert CollectConfig.model_fields["num_inputs"].default == 8
    for key, model, name in [("optimizer.collect.num_inputs", CollectConfig, "num_inputs"),
                             ("optimizer.selection_temperature", OptimizerConfig,
                              "selection_temperature"),
                             ("reward.adapt_head_lr", RewardConfig, "adapt_head_lr"),
                             ("data.test_size", DataConfig, "test_size"),
                             ("lm.local.n_batch", LocalEngineConfig, "n_batch")]:
        assert by_key[key]["default"] == str(model.model_fields[name].default), key
    assert by_key["optimizer.update.prompt"]["default"] == "opro"
    assert by_key["optimizer.budget_system_runs"]["default"] == "null"
    assert by_key["optimizer.collect.add_gold"]["default"] == "true"
    assert by_key[VAR + "lora.target_modules"]["default"] == '["q_proj", "v_proj"]'
    assert by_key["name"]["default"] == "(required)"
    assert by_key["optimizer.collect.num_inputs"]["type"] == "int >=1"
    assert by_key["optimizer.update.weights.method"]["type"] == "dpo|grpo"


def test_every_leaf_has_its_help_in_full(everything):
    by_key = schema_rows(everything)
    assert all(r["help"].strip() for r in by_key.values()), \
        [k for k, r in by_key.items() if not r["help"].strip()]
    # piped rows are not truncated: the help is the model's description, whole
    description = CollectConfig.model_fields["adaptive_rounds"].description
    assert len(description) > 60
    assert by_key["optimizer.collect.adaptive_rounds"]["help"] == description


def test_group_keeps_only_its_prefix():
    collect = rows("optimizer.collect")
    assert {r["key"] for r in collect} == {f"optimizer.collect.{n}"
                                           for n in CollectConfig.model_fields}
    reward = rows("reward")
    assert {r["key"] for r in reward} == {f"reward.{n}" for n in RewardConfig.model_fields}
    # a placeholder segment matches a real name
    variables = rows("system.components.retriever.variables.k")
    assert variables and all(r["key"].startswith(VAR) for r in variables)


def test_unknown_group_fails():
    result = runner.invoke(app, ["options", "optimizer.no_such_knob"])
    assert result.exit_code == 1


def test_method_options_are_listed(everything):
    search = method_options("search")
    assert search is not None
    listed = {r["key"]: r for r in everything if r["method"] == "search"}
    assert set(listed) == {f"optimizer.options.{n}" for n in search.model_fields}
    assert listed["optimizer.options.grid_points"]["default"] == \
        str(search.model_fields["grid_points"].default)
    methods = {r["method"] for r in everything if r["method"]}
    assert methods == {m for m in OPTIMIZERS if method_options(m) is not None}
    only = rows("optimizer.options.search")
    assert {r["method"] for r in only} == {"search"} and len(only) == len(search.model_fields)


def test_config_shows_composed_values_that_differ():
    data = {r["key"]: r for r in rows("data", "--config", str(PROJECT_CONFIGS / "hotpotqa.yaml"))}
    assert data["data.test_size"]["default"] == "30"
    assert data["data.test_size"]["composed"] == "100"  # configs/hotpotqa.yaml
    assert data["data.seed"]["composed"] == ""  # the default: not repeated
    opt = {r["key"]: r for r in rows("optimizer", "--config",
                                     str(PROJECT_CONFIGS / "hotpotqa.yaml"))}
    assert opt["optimizer.num_iterations"]["composed"] == "8"  # configs/hotpotqa.yaml
    assert opt["optimizer.collect.temperature"]["composed"] == ""
