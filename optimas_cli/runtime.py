"""Everything a stage needs, built from a validated config: LM client, data splits, system, metric."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from optimas_cli import checks
from optimas_cli.budget import Budget
from optimas_cli.config import Composed, import_object
from optimas_cli.data import Dataset, Example, said_of_data, split
from optimas_cli.errors import ConfigError
from optimas_cli.graph import State, System, build_components
from optimas_cli.lm.base import LM
from optimas_cli.metrics import Metric


@dataclass
class Runtime:
    composed: Composed
    lm: LM
    dataset: Dataset
    splits: dict[str, list[Example]]
    system: System
    metric: Metric
    state: State  # the starting variable values (config, or system_state when given)

    @property
    def budget(self) -> Budget:
        """The run's one budget (what the system executes is recorded there)."""
        return self.system.budget

    def spent(self) -> dict[str, int]:
        """Spend so far, earlier processes included (Budget.spent)."""
        return self.budget.spent()


def model_names(composed: Composed) -> set[str]:
    """Every LM name the config may call (defaults, per-component models, model choices;
    lm.choices only through the model variables that choose among them)."""
    return {name for name, keys in checks.model_names(composed.run).items()
            if keys != ["lm.choices"]}


def make_lm(composed: Composed) -> LM:
    from optimas_cli.lm import LMClient, check_credentials

    if composed.run.lm.cache.mode != "replay":  # a replay never reaches a provider: no key needed
        check_credentials(sorted(model_names(composed)), composed.run.lm)
    return LMClient(composed.run.lm)


def load_state(path: str | Path, system: System) -> State:
    """Variable values from a system.yaml (e.g. RUN/final/system.yaml), checked against the graph."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"system_state: no such file {p}")
    data = yaml.safe_load(p.read_text()) or {}
    data = data.get("state", data)
    state = system.initial_state()
    for comp, values in data.items():
        if comp not in state:
            raise ConfigError(f"{p}: component '{comp}' has no optimizable variables in this system "
                              f"(it has {sorted(state)})")
        for var, value in values.items():
            if var not in state[comp]:
                raise ConfigError(f"{p}: component '{comp}' has no variable '{var}'")
            if value is not None and system.cfg.components[comp].variables[var].type == "weights":
                value = _adapter_value(p, comp, var, value, system)
            state[comp][var] = value
    return state


def _adapter_value(path: Path, comp: str, var: str, value: Any, system: System) -> str:
    """A weights value of a system.yaml, checked: an adapter directory of the component's
    model (a relative one is read against the run directory the file lies in)."""
    from optimas_cli.weights.adapter import AdapterError, check_adapter

    adapter = Path(str(value))
    if not adapter.is_absolute() and not adapter.exists():
        adapter = path.resolve().parent.parent / adapter
    try:
        check_adapter(adapter, system.components[comp].weights_model())
    except AdapterError as e:
        raise ConfigError(f"{path}: {comp}.{var}: {e}") from None
    return str(adapter.resolve())


def checked_dataset(dataset: Any, loader: str) -> Dataset:
    """What `system.loader` returned, if it is a Dataset of Examples; else a ConfigError
    naming the loader and the type it must return."""
    must = "it must return optimas_cli.api.Dataset (Dataset(examples=[Example(...)]))"
    if not isinstance(dataset, Dataset):
        raise ConfigError(f"system.loader {loader} returned {type(dataset).__name__}; {must}")
    if not isinstance(dataset.examples, (list, tuple)):
        raise ConfigError(f"system.loader {loader} returned a Dataset whose examples are a "
                          f"{type(dataset.examples).__name__}; {must}")
    for i, ex in enumerate(dataset.examples):
        if not isinstance(ex, Example):
            raise ConfigError(f"system.loader {loader} returned a Dataset whose examples[{i}] is "
                              f"a {type(ex).__name__}; {must}")
    return dataset


def build_runtime(composed: Composed, lm: LM | None = None) -> Runtime:
    """Load data, build the system and the LM client; errors name the config key at fault."""
    run = composed.run
    loader = import_object(run.system.loader, "system.loader")
    metric = import_object(run.system.metric, "system.metric")
    try:
        dataset = checked_dataset(loader(run.data), run.system.loader)
        splits = split(dataset, run.data)
    except ConfigError:
        raise
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(said_of_data(e)) from None
    lm = lm if lm is not None else make_lm(composed)
    resources = dict(dataset.resources, lm_config=run.lm)
    system = System(run.system, build_components(run.system, resources), lm,
                    Budget.from_config(run.optimizer, lm))
    state = load_state(run.system_state, system) if run.system_state else system.initial_state()
    return Runtime(composed=composed, lm=lm, dataset=dataset, splits=splits, system=system,
                   metric=metric, state=state)
