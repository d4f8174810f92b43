"""`optimas options [GROUP] [--config CONFIG]`: every knob of a run config, from the schemas.

The rows are generated from the pydantic models (`optimas_cli.schema.RunConfig` and
its sub-models; `optimas_cli.methods.method_options(name)` for each method's
`optimizer.options`), never written by hand: a field added to a model is listed, with
its type, its default and its `Field(description=...)` as the help. Keys of free-form
mappings appear as placeholders: `system.components.<component>.variables.<variable>.value`.

GROUP keeps the keys under a dotted prefix (`optimizer.collect`, `reward`,
`optimizer.options.search`: one method's options). `--config CONFIG` composes CONFIG
and adds the composed value where it differs from the default. On a terminal the rows
are a table; piped, they are tab-separated lines, untruncated, under a header line.
"""

from __future__ import annotations

import json
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

REQUIRED = "(required)"
_UNSET = object()
CELL_CHARS = 60  # a composed value's width in the terminal table (a pipe gets all of it)


@dataclass
class Knob:
    """One leaf of the run schema (or of a method's options)."""

    key: str  # dotted path; <name> stands for any key of a mapping
    type: str
    default: Any  # _UNSET: required
    help: str
    method: str = ""  # optimizer.options.<key> rows: the method they belong to
    composed: list[tuple[str, Any]] = field(default_factory=list)  # (instance, value) that differ

    @property
    def default_text(self) -> str:
        return REQUIRED if self.default is _UNSET else fmt(self.default)


def fmt(value: Any) -> str:
    """A value as a YAML-ish one-liner: null, true, 0.5, opro, ["q_proj", "v_proj"]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        plain = value and value.strip() == value and not re.search(r"[\t\n\r]", value)
        return value if plain else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


def _non_null(args: tuple) -> list:
    return [a for a in args if a is not type(None)]


def _submodel(ann: Any) -> type[BaseModel] | None:
    """The model a field holds (Model, or Model | None), else None."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    if get_origin(ann) in (Union, types.UnionType):
        inner = _non_null(get_args(ann))
        if len(inner) == 1:
            return _submodel(inner[0])
    return None


def _mapping_of_models(ann: Any) -> type[BaseModel] | None:
    """The model a dict[str, Model] (or dict[str, Model | None]) field maps to, else None."""
    if get_origin(ann) is dict:
        args = get_args(ann)
        return _submodel(args[1]) if len(args) == 2 else None
    return None


def type_text(ann: Any) -> str:
    origin, args = get_origin(ann), get_args(ann)
    if ann is type(None):
        return "null"
    if ann is Any:
        return "any"
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin in (list, tuple, set):
        return f"{origin.__name__}[{', '.join(type_text(a) for a in args)}]"
    if origin is dict:
        return f"dict[{', '.join(type_text(a) for a in args)}]"
    if isinstance(ann, type):
        return ann.__name__
    return str(ann)


def _bounds(f: FieldInfo) -> str:
    out = []
    for m in f.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                out.append(f"{sign}{getattr(m, attr)}")
        if getattr(m, "min_length", None):
            out.append("non-empty")
    return " ".join(out)


def _default(f: FieldInfo) -> Any:
    if f.is_required():
        return _UNSET
    if f.default_factory is not None:
        return f.default_factory()
    return f.default


def _placeholder(field_name: str) -> str:
    return f"<{field_name[:-1] if field_name.endswith('s') else field_name}>"


def schema_knobs(model: type[BaseModel] | None = None, prefix: str = "") -> list[Knob]:
    """Every leaf of `model` (default: RunConfig), sub-models and mappings of models walked."""
    if model is None:
        from optimas_cli.schema import RunConfig

        model = RunConfig
    out: list[Knob] = []
    for name, f in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = _submodel(f.annotation)
        mapped = _mapping_of_models(f.annotation)
        if sub is not None:
            out += schema_knobs(sub, key + ".")
        elif mapped is not None:
            out += schema_knobs(mapped, f"{key}.{_placeholder(name)}.")
        else:
            bounds = _bounds(f)
            out.append(Knob(key, type_text(f.annotation) + (f" {bounds}" if bounds else ""),
                            _default(f), " ".join((f.description or "").split())))
    return out


def _yaml_comments(method: str) -> dict[str, str]:
    """The comments on `options:` keys in configs/optimizer/<method>.yaml (a key's help when
    its options model gives no description), continuation comment lines joined."""
    from optimas_cli.config import PROJECT_CONFIGS

    path = PROJECT_CONFIGS / "optimizer" / f"{method}.yaml"
    if not path.is_file():
        return {}
    helps: dict[str, str] = {}
    key, inside = None, False
    for line in path.read_text().splitlines():
        if re.match(r"options:", line):
            inside = True
            continue
        if not inside:
            continue
        if line and not line[0].isspace() and not line.startswith("#"):
            break  # the next top-level key
        m = re.match(r"\s+(\w+):[^#]*?(?:\s#\s?(.*))?$", line)
        if m:
            key = m.group(1)
            helps[key] = (m.group(2) or "").strip()
        elif key and re.match(r"\s*#", line):
            helps[key] = f"{helps[key]} {line.strip().lstrip('#').strip()}".strip()
    return helps


def method_knobs() -> list[Knob]:
    """optimizer.options.<key> of every method that takes options, from its options model."""
    from optimas_cli.methods import method_options
    from optimas_cli.schema import OPTIMIZERS

    out: list[Knob] = []
    for method in OPTIMIZERS:
        model = method_options(method)
        if model is None:
            continue
        comments = _yaml_comments(method)
        for k in schema_knobs(model, "optimizer.options."):
            name = k.key.rsplit(".", 1)[1]
            k.help = k.help or comments.get(name, "")
            k.method = method
            out.append(k)
    return out


def all_knobs(group: str | None = None) -> list[Knob]:
    """The schema's knobs, and the methods' options where GROUP may hold them (importing the
    methods takes seconds)."""
    wanted = not group or _matches("optimizer.options.<key>", group.strip("."))
    return schema_knobs() + (method_knobs() if wanted else [])


def _matches(key: str, group: str) -> bool:
    """Whether `key` is `group` or under it; a <placeholder> segment matches any name."""
    ks, gs = key.split("."), group.split(".")
    if len(gs) > len(ks):
        return False
    return all(k == g or (k.startswith("<") and k.endswith(">"))
               for k, g in zip(ks, gs, strict=False))


def select(knobs: list[Knob], group: str | None) -> list[Knob]:
    if not group:
        return knobs
    group = group.strip(".")
    head, _, method = group.rpartition(".")
    if head == "optimizer.options" and any(k.method == method for k in knobs):
        return [k for k in knobs if k.method == method]  # one method's options
    return [k for k in knobs if _matches(k.key, group)]


def _instances(data: Any, parts: list[str], label: list[str],
               pins: list[str]) -> list[tuple[str, Any]]:
    """The values at a dotted path in composed data; <placeholder> parts expand to every key,
    or to the one `pins` names at that place (GROUP's segment, e.g. `retriever`)."""
    if not parts:
        return [(".".join(label), data)]
    head, rest, pin, pins = parts[0], parts[1:], (pins[0] if pins else "") or None, pins[1:]
    if not isinstance(data, dict):
        return []
    if head.startswith("<"):
        return [x for name, sub in data.items() if pin in (None, name)
                for x in _instances(sub, rest, [*label, name], pins)]
    return _instances(data[head], rest, label, pins) if head in data else []


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def attach_composed(knobs: list[Knob], config: str, group: str | None = None) -> None:
    """Each knob's values in the composed CONFIG that differ from its default (of the
    components and variables GROUP names, where it names some)."""
    from optimas_cli.config import load

    run = load(config, []).run
    data = run.model_dump(mode="json")
    for k in knobs:
        parts = k.key.split(".")
        if k.method:
            if run.optimizer.name != k.method or parts[-1] not in run.optimizer.options:
                continue
            found = [("", run.optimizer.options[parts[-1]])]
        else:
            found = _instances(data, parts, [], (group or "").strip(".").split("."))
        default = None if k.default is _UNSET else json.loads(json.dumps(k.default, default=str))
        k.composed = [(where, v) for where, v in found if k.default is _UNSET or not _same(v, default)]


def composed_text(k: Knob, limit: int | None = None, sep: str = "; ") -> str:
    """The composed values (`instance=value` where the key has placeholders), each cut to
    `limit` characters when one is given."""
    def cut(s: str) -> str:
        return s if limit is None or len(s) <= limit else s[:limit - 1] + "…"

    return sep.join(cut(f"{where}={fmt(v)}" if where else fmt(v)) for where, v in k.composed)


def _tsv(knobs: list[Knob], with_composed: bool) -> str:
    head = ["key", "method", "type", "default"] + (["composed"] if with_composed else []) + ["help"]
    lines = ["\t".join(head)]
    for k in knobs:
        row = [k.key, k.method, k.type, k.default_text]
        row += [composed_text(k)] if with_composed else []
        lines.append("\t".join([*row, k.help]))
    return "\n".join(lines) + "\n"


def _tables(knobs: list[Knob], with_composed: bool):
    from rich.markup import escape
    from rich.table import Table

    def table(title: str | None) -> Table:
        t = Table(title=title, title_justify="left", show_lines=False)
        t.add_column("key", no_wrap=True, style="cyan")
        t.add_column("type", overflow="fold")
        t.add_column("default", overflow="fold")
        if with_composed:
            t.add_column("composed", style="yellow", overflow="fold", min_width=24)
        t.add_column("help", ratio=1, min_width=30)
        return t

    groups: dict[str, list[Knob]] = {}
    for k in knobs:
        groups.setdefault(k.method, []).append(k)
    for method, rows in groups.items():
        t = table(f"optimizer.options of '{method}' (optimizer={method})" if method else None)
        for k in rows:
            cells = [k.key, k.type, k.default_text]
            cells += [composed_text(k, CELL_CHARS, "\n")] if with_composed else []
            t.add_row(*(escape(c) for c in [*cells, k.help]))  # `list[str]` is no markup
        yield t


GROUP = typer.Argument(None, help="Only the keys under this dotted prefix, e.g. `optimizer.collect`, "
                                  "`reward`, `optimizer.options.search`")
CONFIG_OPT = typer.Option(None, "--config", "-c",
                          help="A run config YAML: also show its composed values that differ from the defaults")


def register(app: typer.Typer) -> None:
    """Add `optimas options` to the typer app."""

    @app.command(name="options")
    def options_command(group: str | None = GROUP, config: str | None = CONFIG_OPT):
        """List every knob of a run config: dotted key, type, default, help (from the schemas).

        Examples: `optimas options optimizer.collect`; `optimas options reward`;
        `optimas options optimizer --config configs/hotpotqa.yaml` (adds the composed values
        that differ from the defaults). Set any of them as `key=value` on the command line.
        """
        from rich.console import Console
        from rich.markup import escape

        from optimas_cli.errors import ConfigError

        err = Console(stderr=True)
        knobs = select(all_knobs(group), group)
        if not knobs:
            tops = sorted({k.key.split(".")[0] for k in schema_knobs()})
            err.print(f"[red]error:[/] no key under '{escape(group or '')}' (top-level keys: "
                      f"{', '.join(tops)})", soft_wrap=True)
            raise typer.Exit(1)
        if config is not None:
            if not Path(config).is_file():
                err.print(f"[red]error:[/] {escape(config)}: no such config file", soft_wrap=True)
                raise typer.Exit(2)
            try:
                attach_composed(knobs, config, group)
            except ConfigError as e:
                err.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
                raise typer.Exit(2) from None
        if sys.stdout.isatty():
            console = Console()
            for t in _tables(knobs, config is not None):
                console.print(t)
        else:
            typer.echo(_tsv(knobs, config is not None), nl=False)
