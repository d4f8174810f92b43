"""Hydra composition of `CONFIG.yaml [overrides...]` and validation against the schemas.

Any YAML path works as CONFIG: its own directory is Hydra's primary config
dir, and the project's `configs/` is on the search path so defaults such as
`lm: smollm2` resolve to `configs/lm/smollm2.yaml` wherever CONFIG lives.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from pydantic import ValidationError

from optimas_cli.data import resolve_data_path
from optimas_cli.errors import ConfigError
from optimas_cli.graph import check_graph
from optimas_cli.schema import RunConfig

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
    `+`; group choices (`lm=openai`) and explicit `+`/`~`/`++` stay as given.
    Unknown keys are then refused by the schema, with the key named.
    """
    roots = [config_path.parent] + [Path(p[len("file://"):]) for p in search_path(config_path)]
    out = []
    for o in overrides:
        key = o.split("=", 1)[0]
        plain = "=" in o and not o.startswith(("+", "~")) and not key.startswith("hydra")
        is_group = "." not in key and any((r / key).is_dir() for r in roots)
        out.append(f"++{o}" if plain and not is_group else o)
    return out


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
    choices = {k: v for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
               if not k.startswith("hydra/") and v is not None}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0] if msg.strip() else msg


def load(config_path: str | Path, overrides: list[str] | None = None) -> Composed:
    """Compose and validate; raises ConfigError naming file, key and value."""
    overrides = list(overrides or [])
    path = Path(config_path).resolve()
    cfg, choices = compose_raw(path, overrides)
    return validate(cfg, path, overrides, choices)


def validate(cfg: DictConfig, path: Path, overrides: list[str], choices: dict[str, str]) -> Composed:
    """Validate an already composed config (a Hydra job's, or ours) against the schemas."""
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # interpolation errors: say which key holds the interpolation
        key = getattr(e, "full_key", None)
        at = f"'{key}': " if key else ""
        raise ConfigError(f"{where(key, path, overrides, choices) if key else path}: "
                          f"{at}{_first_line(str(e))}") from None
    raw.pop("hydra", None)
    try:
        run = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_explain(e, raw, path, overrides, choices)) from None
    composed = Composed(path=path, overrides=list(overrides), raw=raw, run=run, choices=choices)
    check_semantics(composed)
    return composed


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
    of a key above it or inside it; for a `missing` key, one that made its parent."""
    names = [(o, o.lstrip("+~").split("=", 1)[0]) for o in overrides]
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


def _explain(err: ValidationError, raw: dict, path: Path, overrides: list[str],
             choices: dict[str, str]) -> str:
    e = err.errors()[0]
    loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(str(p) for p in loc) or "<top level>"
    source = where(key, path, overrides, choices, missing=e["type"] == "missing")
    if e["type"] == "extra_forbidden":
        msg = f"unknown key '{key}'"
    elif e["type"] == "missing":
        msg = f"missing required value '{key}'"
    else:
        value = _lookup(raw, loc)
        msg = f"bad value for '{key}': {value!r} ({e['msg']})"
    more = f" (and {len(err.errors()) - 1} more problem(s))" if len(err.errors()) > 1 else ""
    return f"{source}: {msg}{more}"


def _import(dotted: str) -> Any:
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


def import_object(dotted: str, what: str) -> Any:
    """Import `pkg.mod:attr` (or `pkg.mod.attr`); ConfigError names `what` on failure."""
    try:
        return _import(dotted)
    except ValueError as e:
        raise ConfigError(f"{what}: {e}") from None


def check_semantics(c: Composed) -> None:
    """Checks beyond types: the graph, each component kind's params, the loader and metric
    paths, data.path (a method's options: methods.check_options)."""
    problems = [(key, f"'{key}': {msg}") for key, msg in check_graph(c.run.system)]
    for key, dotted in (("system.loader", c.run.system.loader), ("system.metric", c.run.system.metric)):
        try:
            if not callable(_import(dotted)):
                raise ValueError("not callable")
        except ValueError as e:
            problems.append((key, f"bad value for '{key}': {dotted!r} ({e})"))
    if c.run.data.path:
        try:
            resolve_data_path(c.run.data.path, c.run.data.path, "")
        except FileNotFoundError as e:
            problems.append(("data.path", f"bad value for 'data.path': {c.run.data.path!r} "
                                          f"({str(e).strip().rstrip('.')})"))
    if problems:
        key, msg = problems[0]
        raise ConfigError(f"{where(key, c.path, c.overrides, c.choices)}: {msg}")


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
