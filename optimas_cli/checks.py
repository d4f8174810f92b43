"""What a config is checked for beyond its types, each problem a (config key, message).

Nothing here runs a model. `semantic_problems` is part of every load: the graph and each
component kind's params (a python component's `params.function` imported), the loader and
metric paths, data.path, and every model name (`model_problems`: a local/ name that is not
embedded, a name whose provider litellm cannot tell). `data_problems` is what
`optimas validate` adds: the loader is read
once, its first example must supply every `system.inputs` field and the splits must fit.
`lm_model_problem` words the common case of a model outside `choices`: `lm.model` overridden
alone while the model variables start from it and choose among `lm.choices`.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from optimas_cli import datasets_registry
from optimas_cli.data import resolve_data_path, split
from optimas_cli.graph import check_graph, component_problems
from optimas_cli.schema import ComponentConfig, DataConfig, RunConfig, SystemConfig

Problem = tuple[str, str]  # (dotted config key, message)
LM_MODEL = "${lm.model}"
LM_CHOICES = "${lm.choices}"


def import_dotted(dotted: str) -> Any:
    """Import `pkg.mod:attr` (or `pkg.mod.attr`); ValueError saying why it cannot."""
    mod_name, _, attr = dotted.partition(":") if ":" in dotted else dotted.rpartition(".")
    if not mod_name or not attr:
        raise ValueError(f"'{dotted}' is not a dotted path like 'package.module:name'")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - not found, or the module itself fails to import
        raise ValueError(f"cannot import module '{mod_name}' ({type(e).__name__}: {e})") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ValueError(f"module '{mod_name}' has no attribute '{attr}'") from None


def callable_problem(dotted: str) -> str | None:
    """Why a dotted path that must name a function does not (None: it does)."""
    try:
        if not callable(import_dotted(dotted)):
            raise ValueError("not callable")
    except ValueError as e:
        return str(e)
    return None


def loader_data_names(dotted: str | None) -> tuple[str, ...]:
    """The data.path values a loader reads by name instead of as a file (its function's
    `data_names` attribute; none if it has none or cannot be imported)."""
    if not isinstance(dotted, str):
        return ()
    try:
        return tuple(getattr(import_dotted(dotted), "data_names", ()))
    except ValueError:
        return ()


def semantic_problems(system: SystemConfig | None, data: DataConfig | None,
                      raw_system: Any = None) -> list[Problem]:
    """The graph, every dotted path, data.path. A section that failed its schema (None) is
    left to the schema's messages; of a system that failed (`raw_system`: as written), the
    components that pass on their own and the loader and metric paths are still checked."""
    problems: list[Problem] = []
    if system is not None:
        problems += check_graph(system)
        paths = {"system.loader": system.loader, "system.metric": system.metric}
    elif isinstance(raw_system, dict):
        for name, comp in (raw_system.get("components") or {}).items():
            try:
                problems += component_problems(name, ComponentConfig.model_validate(comp))
            except ValidationError:
                continue  # the schema's errors name it
        paths = {f"system.{k}": raw_system[k] for k in ("loader", "metric")
                 if isinstance(raw_system.get(k), str)}
    else:
        paths = {}
    problems = [(key, f"'{key}': {msg}") for key, msg in problems]
    for key, dotted in paths.items():
        why = callable_problem(dotted)
        if why:
            problems.append((key, f"bad value for '{key}': {dotted!r} ({why})"))
    # a registered name is valid by name: it is found (or fetched) when the data is read,
    # so loading a config never starts a download; so is a name the loader reads by name
    # (its `data_names`, e.g. the Amazon loader's primary|multilingual|both)
    named = set(loader_data_names(paths.get("system.loader")))
    if data is not None and data.path and datasets_registry.entry(data.path) is None \
            and data.path not in named:
        try:
            resolve_data_path(data.path, data.path, "")
        except FileNotFoundError as e:
            problems.append(("data.path", f"bad value for 'data.path': {data.path!r} "
                                          f"({str(e).strip().rstrip('.')})"))
    return problems


def model_names(run: RunConfig) -> dict[str, list[str]]:
    """Every LM name the config may call, with the keys that hold it (lm.model and
    lm.choices first, then the components' params.model and model variables, and an
    embedded LLM judging as the reward backbone)."""
    from optimas_cli.lm.base import LOCAL_PREFIX

    found: dict[str, list[str]] = {}
    named = [("lm.model", run.lm.model), *(("lm.choices", m) for m in run.lm.choices)]
    if run.reward.backbone.startswith(LOCAL_PREFIX):
        named.append(("reward.backbone", run.reward.backbone))
    for name, comp in run.system.components.items():
        at = f"system.components.{name}"
        if comp.params.get("model"):
            named.append((f"{at}.params.model", comp.params["model"]))
        for vname, var in comp.variables.items():
            if var.type == "model":
                named += [(f"{at}.variables.{vname}.value", var.value),
                          *((f"{at}.variables.{vname}.choices", c) for c in var.choices or [])]
    for key, model in named:
        keys = found.setdefault(str(model), [])
        if key not in keys:
            keys.append(key)
    return found


def model_problems(run: RunConfig) -> list[Problem]:
    """A model name that names no model (lm.api.unknown_model), at the first key that holds
    it: an unknown name fails here, not as a missing API key when the run starts."""
    from optimas_cli.lm.api import unknown_model

    problems: list[Problem] = []
    for model, keys in model_names(run).items():
        why = unknown_model(model)
        if why:
            also = f" (also in {', '.join(keys[1:3])}{', ...' if len(keys) > 3 else ''})" \
                if len(keys) > 1 else ""
            problems.append((keys[0], f"'{keys[0]}': unknown model {model!r}{also}: {why}"))
    return problems


def _without_prefix(e: Exception) -> str:
    return str(e).removeprefix("data: ")


def data_problems(system: SystemConfig, data: DataConfig) -> list[Problem]:
    """Read the loader once: a Dataset whose first example supplies every system input, with
    examples enough for the configured splits."""
    try:
        loader = import_dotted(system.loader)
    except ValueError:
        return []  # semantic_problems said so
    what = f"'system.loader': {system.loader}"
    try:
        dataset = loader(data)
    except (FileNotFoundError, ValueError) as e:
        return [("system.loader", f"{what} failed: {_without_prefix(e)}")]
    except Exception as e:  # noqa: BLE001 - whatever the user's loader raised, named
        return [("system.loader", f"{what} raised {type(e).__name__}: {e}")]
    examples = getattr(dataset, "examples", None)
    if not isinstance(examples, list):
        return [("system.loader", f"{what} returned {type(dataset).__name__}; it must return "
                                  "a Dataset (Dataset(examples=[Example(...)]))")]
    if not examples:
        return [("system.loader", f"{what} returned no examples")]
    first = examples[0]
    inputs = getattr(first, "inputs", None)
    if not isinstance(inputs, dict):
        return [("system.loader", f"{what}: its first example is a {type(first).__name__}, not "
                                  "an optimas_cli.data.Example(id, inputs, target)")]
    problems: list[Problem] = []
    missing = [f for f in system.inputs if f not in inputs]
    if missing:
        problems.append(("system.inputs", f"'system.inputs': the first example "
                                          f"({getattr(first, 'id', '?')!r}) of {system.loader} "
                                          f"has no input {', '.join(map(repr, missing))} "
                                          f"(its inputs: {sorted(inputs)})"))
    try:
        split(dataset, data)
    except ValueError as e:
        problems.append(("data", f"'data': {_without_prefix(e)}"))
    return problems


def _at(data: Any, loc: tuple) -> Any:
    for part in loc:
        if not isinstance(data, (dict, list)):
            return None
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def follows_lm_model(raw: dict, unresolved: dict, loc: tuple) -> bool:
    """Whether `loc` is a model variable that starts from ${lm.model}, which is not among its
    choices (its schema error is then the one lm_model_problem words)."""
    if len(loc) != 5 or loc[:2] != ("system", "components") or loc[3] != "variables":
        return False
    var, spec = _at(raw, loc), _at(unresolved, loc)
    return (isinstance(var, dict) and isinstance(spec, dict) and var.get("type") == "model"
            and str(spec.get("value", "")).replace(" ", "") == LM_MODEL
            and isinstance(var.get("choices"), list) and var.get("value") not in var["choices"])


def lm_model_problem(raw: dict, unresolved: dict, keys: list[str]) -> Problem:
    """`lm.model` outside the choices of the model variables `keys` that start from it, with
    the override that sets the model and its choices at once."""
    model = _at(raw, ("lm", "model"))
    names = ", ".join(keys)
    follow = all(str(_at(unresolved, (*k.split("."), "choices"))).replace(" ", "") == LM_CHOICES
                 for k in keys)
    if follow:
        return "lm.model", (
            f"lm.model {model!r} is not in lm.choices {_at(raw, ('lm', 'choices'))}, which the "
            f"model variables that start from it choose among ({names}); set both at once: "
            f"lm.model={model} 'lm.choices=[{model}]' (or add it to the list in lm.choices, or "
            "pick an lm= group)")
    choices = _at(raw, (*keys[0].split("."), "choices")) or []
    return "lm.model", (
        f"lm.model {model!r} is not among the choices of the model variables that start from it "
        f"({names}); add it to their choices, e.g. "
        f"'{keys[0]}.choices=[{','.join(map(str, [*choices, model]))}]'")
