"""Hydra composition of `CONFIG.yaml [overrides...]` and validation against the schemas.

Any YAML path works as CONFIG: its own directory is Hydra's primary config
dir, and the project's `configs/` is on the search path so defaults such as
`lm: smollm2` resolve to `configs/lm/smollm2.yaml` wherever CONFIG lives.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from pydantic import ValidationError

from optimas_cli import checks
from optimas_cli.checks import import_dotted
from optimas_cli.errors import ConfigError
from optimas_cli.schema import DataConfig, RunConfig, SystemConfig

__all__ = ["ConfigError", "Composed", "load"]

PROJECT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ("lm", "system", "optimizer", "reward")
SECRET_KEY = re.compile(r"(api_key|apikey|token|secret|password)$", re.IGNORECASE)
SECRET_ENV = re.compile(r"(key|token|secret|password)$", re.IGNORECASE)  # e.g. OPENAI_API_KEY
MIN_SECRET_CHARS = 8  # shorter values cannot be told from ordinary text


@dataclass
class Composed:
    """A composed and validated run config, with where it came from."""

    path: Path
    overrides: list[str]
    raw: dict[str, Any]  # the composed config as plain data (secrets intact)
    run: RunConfig
    choices: dict[str, str] = field(default_factory=dict)  # group -> option chosen


def search_path(config_path: Path) -> list[str]:
    dirs = [PROJECT_CONFIGS, Path.cwd() / "configs"]
    seen, out = {config_path.parent.resolve()}, []
    for d in dirs:
        d = d.resolve()
        if d.is_dir() and d not in seen:
            seen.add(d)
            out.append(f"file://{d}")
    return out


def hydra_overrides(overrides: list[str], config_path: Path) -> list[str]:
    """The user's overrides as Hydra should see them.

    `key=value` on a key the YAML does not spell out (but the schema defaults)
    becomes `++key=value`, so every schema key is overridable without Hydra's
    `+`; a group choice (`lm=openai`) of a group the config's defaults list does not
    choose (a user's config without one) becomes `+lm=openai`; explicit `+`/`~`/`++`
    stay as given. Unknown keys are then refused by the schema, with the key named.
    """
    roots = [config_path.parent] + [Path(p[len("file://"):]) for p in search_path(config_path)]
    out, chosen = [], None
    for o in overrides:
        key = o.split("=", 1)[0]
        plain = "=" in o and not o.startswith(("+", "~")) and not key.startswith("hydra")
        is_group = "." not in key and any((r / key).is_dir() for r in roots)
        if plain and is_group:
            chosen = _chosen_groups(config_path) if chosen is None else chosen
            out.append(o if key in chosen else f"+{o}")
        else:
            out.append(f"++{o}" if plain else o)
    return out


def _chosen_groups(config_path: Path) -> set[str]:
    """The config groups CONFIG's defaults tree chooses an option of (all of them when that
    cannot be told: Hydra then says what is wrong)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a Hydra job: leave its overrides be
        return set(GROUPS)
    try:
        with initialize_config_dir(config_dir=str(config_path.parent), version_base="1.3"):
            cfg = compose(config_name=config_path.stem, return_hydra_config=True, overrides=[
                f"hydra.searchpath=[{','.join(search_path(config_path))}]"])
        return set(cfg.hydra.runtime.choices)
    except Exception:  # noqa: BLE001 - the config fails on its own: its compose says why
        return set(GROUPS)
    finally:
        GlobalHydra.instance().clear()


def _check_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: malformed YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    defaults = data.get("defaults")
    if isinstance(defaults, list) and f"/{path.stem}" in defaults:
        # the file's own directory is searched first, so Hydra would recurse without end
        raise ConfigError(f"{path}: defaults entry '/{path.stem}' names this file itself (its "
                          "own directory is searched first); rename the file, e.g. "
                          f"{path.stem}_bench.yaml")
    return data


def _compose(path: Path, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    # `~key` of a plain key resets it to the schema default; the YAML groups spell out only
    # what differs from the schema, so such a key may be absent: then there is nothing to drop
    resets = [o[1:] for o in overrides
              if o.startswith("~") and "=" not in o and "." in o and _schema_default(o[1:])]
    rest = [o for o in overrides if o[1:] not in resets or not o.startswith("~")]
    hydra_args = hydra_overrides(rest, path) + [f"hydra.searchpath=[{','.join(search_path(path))}]"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base="1.3"):
            cfg = compose(config_name=path.stem, overrides=hydra_args, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    for key in resets:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent)
        if node is not None and leaf in node:
            with open_dict(node):
                del node[leaf]
    return cfg


def _schema_default(key: str) -> bool:
    """Whether `key` (dotted) is a leaf of the run schema with a default."""
    from pydantic import BaseModel

    from optimas_cli.schema import RunConfig

    model: Any = RunConfig
    for part in key.split("."):
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return False
        model = field.annotation
    return not (isinstance(model, type) and issubclass(model, BaseModel)) and not field.is_required()


def _compose_error(e: Exception, path: Path, overrides: list[str]) -> ConfigError:
    """A composition error, blamed on the file when it fails without overrides, else on
    the first override that fails on its own (an override's syntax, group option, ...)."""
    from hydra.errors import OverrideParseException

    msg = _first_line(str(e))
    culprit = None
    for o in ([None] + overrides) if overrides else []:
        try:
            _compose(path, [o] if o else [])
        except Exception:  # noqa: BLE001 - any error: this is the culprit
            culprit = o
            break
    if culprit is None:
        return ConfigError(f"{path}: {msg}")
    for hydra_form in hydra_overrides([culprit], path):  # say it as the user wrote it
        msg = msg.replace(hydra_form, culprit)
    if isinstance(e, OverrideParseException):
        msg = (f"not a valid override ({msg}); write key=value, +key=value, ~key or "
               "group=option")
    return ConfigError(f"command-line override '{culprit}': {msg}")


def compose_raw(config_path: str | Path, overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """Compose CONFIG with its defaults list and overrides; return (config, group choices)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    path = Path(config_path).resolve()
    _check_yaml(path)
    try:
        cfg = _compose(path, overrides)
    # Hydra raises plain ValueErrors too (a defaults list that is no list, an empty key)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise _compose_error(e, path, overrides) from None
    except RecursionError:  # a defaults entry that leads back to an earlier file
        raise ConfigError(
            f"{path}: its defaults lists form a cycle: an entry such as '/pubmedqa' in a file "
            f"of {path.parent.name}/ loads {path.parent.name}/pubmedqa.yaml when there is one "
            "(the primary config's directory is searched first); rename that file or give "
            "the entry's directory") from None
    choices = {k: v for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
               if not k.startswith("hydra/") and v is not None}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0] if msg.strip() else msg


def load(config_path: str | Path, overrides: list[str] | None = None, *,
         read_data: bool = False) -> Composed:
    """Compose and validate; raises ConfigError naming file, key and value of every problem."""
    overrides = list(overrides or [])
    path = Path(config_path).resolve()
    cfg, choices = compose_raw(path, overrides)
    return validate(cfg, path, overrides, choices, read_data=read_data)


def validate(cfg: DictConfig, path: Path, overrides: list[str], choices: dict[str, str], *,
             read_data: bool = False) -> Composed:
    """Validate an already composed config (a Hydra job's, or ours) against the schemas and
    optimas_cli.checks; ConfigError lists every problem. `read_data`: also read the loader
    once (checks.data_problems, `optimas validate`)."""
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # interpolation errors: say which key holds the interpolation
        key = getattr(e, "full_key", None)
        at = f"'{key}': " if key else ""
        raise ConfigError(f"{where(key, path, overrides, choices) if key else path}: "
                          f"{at}{_first_line(str(e))}") from None
    raw.pop("hydra", None)
    unresolved = OmegaConf.to_container(cfg, resolve=False)
    problems: list[tuple[str, str, bool]] = []  # (key, message, the key is missing)
    run = None
    try:
        run = RunConfig.model_validate(raw)
    except ValidationError as e:
        problems += _explain(e, raw, unresolved)
    # the sections that passed their schema are checked further even when others failed
    system = run.system if run else _section(SystemConfig, raw.get("system"))
    data = run.data if run else _section(DataConfig, raw.get("data", {}))
    semantic = checks.semantic_problems(system, data, raw.get("system"))
    if run is not None:
        semantic += checks.model_problems(run)
    # a loader or data.path already found wrong: reading the data would only say it again
    if read_data and system and data and \
            not any(k in ("system.loader", "data.path") for k, _ in semantic):
        semantic += checks.data_problems(system, data)
    problems += [(key, msg, False) for key, msg in semantic]
    if problems:
        raise problems_error(problems, path, overrides, choices)
    return Composed(path=path, overrides=list(overrides), raw=raw, run=run, choices=choices)


def _section(model: Any, value: Any) -> Any:
    """`value` validated by `model`, or None when it fails (the schema's errors say why)."""
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def problems_error(problems: list[tuple[str, str, bool]], path: Path, overrides: list[str],
                   choices: dict[str, str]) -> ConfigError:
    """One ConfigError listing every problem, each on its own line after the file (or the
    override) its key came from."""
    lines = list(dict.fromkeys(f"{where(key, path, overrides, choices, missing=missing)}: {msg}"
                               for key, msg, missing in problems))
    if len(lines) == 1:
        return ConfigError(lines[0])
    return ConfigError(f"{len(lines)} problems:\n" + "\n".join(f"  {line}" for line in lines))


def _lookup(raw: Any, loc: tuple) -> Any:
    cur = raw
    for part in loc:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return "<missing>"
    return cur


def where(key: str, path: Path, overrides: list[str], choices: dict[str, str],
          missing: bool = False) -> str:
    """The file (or override) a dotted key most likely came from: an override of the key,
    of a key above it or inside it; for a `missing` key, one that made its parent. Of
    overrides of the same key, the last one: it is the one Hydra keeps."""
    names = [(o, o.lstrip("+~").split("=", 1)[0]) for o in reversed(overrides)]
    for o, name in names:
        if key == name or key.startswith(name + ".") or name.startswith(key + "."):
            return f"command-line override '{o}'"
    parent = key.rpartition(".")[0]
    for o, name in names:
        if missing and parent and name.startswith(parent + "."):
            return f"command-line override '{o}'"
    top = key.split(".", 1)[0]
    primary = _check_yaml(path)
    cur: Any = primary
    for part in key.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            cur = None
            break
    if cur is None and top in choices:
        for root in [path.parent, *(Path(p[len("file://"):]) for p in search_path(path))]:
            cand = root / top / f"{choices[top]}.yaml"
            if cand.is_file():
                return str(cand)
    return str(path)


def _explain(err: ValidationError, raw: dict, unresolved: dict) -> list[tuple[str, str, bool]]:
    """Every schema error as (key, message, the key is missing); model variables that start
    from an lm.model outside their choices are one problem, worded by checks.lm_model_problem."""
    out, follow_lm = [], []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "<top level>"
        if checks.follows_lm_model(raw, unresolved, loc):
            follow_lm.append(key)
        elif e["type"] == "extra_forbidden":
            out.append((key, f"unknown key '{key}'", False))
        elif e["type"] == "missing":
            out.append((key, f"missing required value '{key}'", True))
        else:
            value = _lookup(raw, loc)
            why = e["msg"].removeprefix("Value error, ")
            # a section's own check (a variable's space) says what is wrong in its words
            section = isinstance(value, dict) and e["type"] == "value_error"
            shown = why if section else f"{value!r} ({why})"
            out.append((key, f"bad value for '{key}': {shown}", False))
    if follow_lm:
        out.insert(0, (*checks.lm_model_problem(raw, unresolved, follow_lm), False))
    return out


def import_object(dotted: str, what: str) -> Any:
    """Import `pkg.mod:attr` (or `pkg.mod.attr`); ConfigError names `what` on failure."""
    try:
        return import_dotted(dotted)
    except ValueError as e:
        raise ConfigError(f"{what}: {e}") from None


def redact(data: Any) -> Any:
    """A copy of `data` with secret-looking values replaced by '***'."""
    if isinstance(data, dict):
        return {k: ("***" if SECRET_KEY.search(str(k)) and v else redact(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v) for v in data]
    return data


def secret_values() -> list[str]:
    """Values of the environment's secret-named variables (*_KEY, *_TOKEN, *SECRET, *PASSWORD),
    longest first: what no artifact or log line may contain."""
    values = {v for k, v in os.environ.items()
              if SECRET_ENV.search(k) and len(v.strip()) >= MIN_SECRET_CHARS}
    return sorted(values, key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` with every secret value of the environment replaced by '[redacted]' (a provider
    error can quote the key it was sent, e.g. in a URL)."""
    for value in secret_values():
        if value in text:
            text = text.replace(value, "[redacted]")
    return text


def to_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
