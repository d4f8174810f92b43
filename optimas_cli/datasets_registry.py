"""The registry of the seed datasets (datasets_registry.yaml beside this module).

A registered file has a name, `<folder>/<file>` (`hotpotqa/hotpot_dev_distractor_1k.jsonl`),
that configs use as `data.path`; its size and sha256; its official source; and, as every seed
file keeps only part of an official release, the ids of the rows it keeps
(optimas_cli/dataset_ids/). Where such a file lies on this machine, and downloading it, is
optimas_cli/data_files.py.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

HERE = Path(__file__).resolve().parent
REGISTRY_FILE = HERE / "datasets_registry.yaml"
IDS_DIR = HERE / "dataset_ids"
URL_ENV = "OPTIMAS_DATA_URL"  # a mirror serving {base}/{name}; overrides the YAML's base_url


class Selection(BaseModel):
    """Which rows of the official release a file keeps."""

    model_config = ConfigDict(extra="forbid")
    by: str = Field(description="the column naming a row there (`row`: its 0-based data row "
                                "of `via`)")
    ids: str = Field(description="the file under optimas_cli/dataset_ids/ listing the kept "
                                 "ids, one a line, in this file's order")


class Entry(BaseModel):
    """One registered data file."""

    model_config = ConfigDict(extra="forbid")
    name: str
    size: int = Field(description="bytes")
    sha256: str
    rows: int
    license: str
    source: str = Field(description="the official file or page the rows come from")
    via: str | None = Field(None, description="the redistribution the rows were selected from, "
                                              "where it is not `source`")
    selection: Selection | None = None
    derived: str = Field(description="how the file is made from `source`")

    def url(self, base: str) -> str:
        return f"{base.rstrip('/')}/{self.name}"


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str | None = None
    files: dict[str, Entry]


@functools.cache
def registry() -> Registry:
    raw: dict[str, Any] = yaml.safe_load(REGISTRY_FILE.read_text(encoding="utf-8"))
    raw["files"] = {name: {"name": name, **e} for name, e in raw.get("files", {}).items()}
    return Registry.model_validate(raw)


def entry(name: str | None) -> Entry | None:
    """The registered file of that name, or None (not a registry name: a path)."""
    return registry().files.get(name) if name else None


def names() -> list[str]:
    return list(registry().files)


def base_url() -> str | None:
    """Where downloads come from: $OPTIMAS_DATA_URL, else the registry's base_url."""
    return os.environ.get(URL_ENV) or registry().base_url


def selection_ids(name: str) -> list[str]:
    """The ids of the official rows a registered file keeps, in its order."""
    e = entry(name)
    if e is None or e.selection is None:
        raise KeyError(f"{name}: no selection recorded in {REGISTRY_FILE}")
    return (IDS_DIR / e.selection.ids).read_text(encoding="utf-8").split()


def registered_name(path: str | None) -> str | None:
    """The registry name a `data.path` stands for: the name itself, or a path whose last two
    parts are one (`../shared/data/hotpotqa/x.jsonl`, as run configs recorded before the
    registry); None for any other file."""
    if not path:
        return None
    parts = PurePosixPath(str(path).replace("\\", "/")).parts
    tail = "/".join(parts[-2:])
    return tail if tail in registry().files else None


def with_registered_path(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """A data config with `path` as its registry name where it names a registered file, so
    that runs recorded with `../shared/data/...` and runs naming the file pair up."""
    if not isinstance(data, dict) or registered_name(data.get("path")) is None:
        return data
    return {**data, "path": registered_name(data["path"])}
