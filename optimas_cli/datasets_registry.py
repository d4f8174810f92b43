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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class Build(BaseModel):
    """How the file is built here from its official file, where no mirror serves it
    (optimas_cli/data_derive.py): the rows of `selection`, in its order, written as below."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["json_array", "jsonl", "csv"] = Field(
        description="the official file's: a JSON array of objects, JSON lines, or CSV with a "
                    "header row (written back by Python's csv.writer: minimal quoting, \\r\\n "
                    "after each row)")
    keys: list[str] | None = Field(None, description="a written JSON row's keys, in this order "
                                                     "(none: the official row's own order)")
    ensure_ascii: bool = Field(False, description="json.dumps's, for a JSON row (default "
                                                  "separators, one row a line)")


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
    build: Build | None = Field(None, description="how to build it from `official_url`")
    no_build: str | None = Field(None, description="why it cannot be built here, where not")

    @model_validator(mode="after")
    def _build_or_why_not(self) -> Entry:
        if (self.build is None) == (self.no_build is None):
            raise ValueError(f"{self.name}: give either `build` or `no_build`")
        if self.build is not None and self.selection is None:
            raise ValueError(f"{self.name}: `build` needs a `selection`")
        return self

    @property
    def official_url(self) -> str:
        """The official file a build downloads: `via` where given, else `source`."""
        return self.via or self.source

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
