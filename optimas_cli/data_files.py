"""Where a registered data file is on this machine, and getting it there.

Look-up order for a registry name (optimas_cli/datasets_registry.py):

1. `$OPTIMAS_DATA_DIR/<name>` when OPTIMAS_DATA_DIR is set (then the only place looked in,
   and where a download goes);
2. else `../shared/data/<name>` beside the project, where that file exists;
3. else the user's cache, `<user cache>/optimas/data/<name>`; a file that is not there is
   downloaded from `{base_url}/{name}` (base_url: $OPTIMAS_DATA_URL, else the registry's) and
   kept only when its size and sha256 are the registry's. With no base_url, a file the
   registry can build is built from its official file (optimas_cli/data_derive.py; the
   official file kept in `<download folder>/official/`), and kept under the same check.

A file found in any of them is checked the same way. A missing file, a failed download or a
mismatch is one line: the places looked in and the command that gets the file
(`optimas data fetch NAME`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import typer

from optimas_cli import data_derive
from optimas_cli import datasets_registry as reg

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
DIR_ENV = "OPTIMAS_DATA_DIR"
log = logging.getLogger(__name__)


class DataFileError(FileNotFoundError, ValueError):
    """A registered file that is not on this machine, or not the registry's bytes: both a
    FileNotFoundError and a ValueError, as a loader's other data errors are."""


def cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("optimas")) / "data"


def search_dirs() -> list[Path]:
    """The directories looked in, in order (see the module's docstring)."""
    if os.environ.get(DIR_ENV):
        return [Path(os.environ[DIR_ENV]).expanduser()]
    return [d for d in (SHARED_DATA,) if d.is_dir()] + [cache_dir()]


def download_dir() -> Path:
    return search_dirs()[-1]


def _fetch_command(name: str) -> str:
    return f"`optimas data fetch {name}`"


def _where(name: str) -> str:
    return ", ".join(str(d / name) for d in search_dirs())


def check(path: Path, entry: reg.Entry) -> None:
    """DataFileError unless the file has the registry's size and sha256."""
    differs = _differs(path, entry)
    if differs is None:
        return
    raise DataFileError(f"{path}: {differs}: a different or damaged copy; delete it and run "
                        f"{_fetch_command(entry.name)}, or set data.path={path} to read it "
                        f"unchecked")


def _differs(path: Path, entry: reg.Entry) -> str | None:
    """How the file differs from the registry's (size, else sha256); None where it does not."""
    size = path.stat().st_size
    digest = sha256_of(path) if size == entry.size else None
    if digest == entry.sha256:
        return None
    got = f"{size} bytes" if digest is None else f"sha256 {digest[:12]}…"
    want = f"{entry.size} bytes" if digest is None else f"{entry.sha256[:12]}…"
    return f"{got}, but the registry's {entry.name} has {want}"


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def locate(name: str) -> Path | None:
    """The first copy of a registered file in the look-up order, checked; None if none."""
    entry = _entry(name)
    for d in search_dirs():
        path = d / name
        if path.is_file():
            check(path, entry)
            return path
    return None


def resolve(name: str, download: bool = True) -> Path:
    """The path of a registered file, downloaded to the cache first if it is nowhere here."""
    path = locate(name)
    if path is not None:
        return path
    if not download:
        raise DataFileError(f"{name} is not on this machine (looked in {_where(name)}); get it "
                            f"with {_fetch_command(name)}")
    return fetch(name)


def fetch(name: str) -> Path:
    """Download a registered file into the download directory (from the mirror; with none,
    build it from its official file), check it, keep it."""
    from filelock import FileLock

    entry = _entry(name)
    base = reg.base_url()
    target = download_dir() / name
    if base is None and entry.build is None:
        elsewhere = "" if os.environ.get(DIR_ENV) else f"set {DIR_ENV} to a folder that holds it, "
        raise DataFileError(
            f"{name} is not on this machine (looked in {_where(name)}), no download URL is "
            f"set, and it cannot be built here ({entry.no_build}): set {reg.URL_ENV} to a "
            f"mirror of the seed data and run {_fetch_command(name)}, {elsewhere}or put the "
            f"file at {target} (its source: {entry.source})")
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_file():  # another process fetched it meanwhile
            check(target, entry)
            return target
        if base is None:
            _build(entry, target)
        else:
            _download(entry, base, target)
    check(target, entry)
    return target


def _download(entry: reg.Entry, base: str, target: Path) -> None:
    """{base}/{name} to the target, through a temporary file kept only if its sha256 matches."""
    import pooch

    name, url = entry.name, entry.url(base)
    log.info("downloading %s from %s to %s", name, url, target)
    try:  # pooch writes a temporary file and moves it in place only when the hash matches
        pooch.retrieve(url, known_hash=f"sha256:{entry.sha256}", fname=target.name,
                       path=target.parent, progressbar=False)
    except (OSError, ValueError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, ValueError) and "hash" in why:  # pooch deleted the download
            why = f"its sha256 is not the registry's {entry.sha256[:12]}…"
        raise DataFileError(f"{name}: download from {url} failed ({why}); not kept (looked "
                            f"in {_where(name)}); retry with {_fetch_command(name)}, or "
                            f"set {reg.URL_ENV} to a mirror of the seed data") from None


def _build(entry: reg.Entry, target: Path) -> None:
    """The target built from the entry's official file, moved in place only if its size and
    sha256 are the registry's."""
    name, official = entry.name, download_dir() / "official"
    instead = (f"or set {reg.URL_ENV} to a mirror of the seed data, or {DIR_ENV} to a folder "
               f"that holds it")
    log.info("building %s from %s", name, entry.official_url)
    try:
        tmp = data_derive.build(entry, official, target.parent)
    except data_derive.BuildError as e:
        raise DataFileError(f"{e}; {name} not built (looked in {_where(name)}); retry with "
                            f"{_fetch_command(name)}, {instead}") from None
    differs = _differs(tmp, entry)
    if differs is not None:
        tmp.unlink()
        kept = data_derive.official_path(entry, official)
        raise DataFileError(f"{name}: built from {entry.official_url} (kept at {kept}), but "
                            f"{differs}: that official file is not the one the registry was "
                            f"made from; not kept; delete {kept} to download it again, "
                            f"{instead}")
    os.replace(tmp, target)


def _entry(name: str) -> reg.Entry:
    entry = reg.entry(name)
    if entry is None:
        raise DataFileError(f"{name!r} is not a registered data file; registered: "
                            f"{', '.join(reg.names())}")
    return entry


# ------------------------------------------------------------------ `optimas data`

data_app = typer.Typer(no_args_is_help=True, help="The seed datasets: where they are, fetch them.")


@data_app.command("list")
def list_command() -> None:
    """Every registered file: rows, size, and where it is on this machine (or `missing`)."""
    for name in reg.names():
        e = reg.entry(name)
        try:
            where = str(locate(name) or "missing")
        except DataFileError as err:
            where = f"mismatch: {err}"
        typer.echo(f"{name}\t{e.rows} rows\t{e.size} bytes\t{where}")


NAMES = typer.Argument(None, help="Registry names (`optimas data list`); none: all")


@data_app.command("fetch")
def fetch_command(names: list[str] = NAMES):
    """Download registered files that are not on this machine yet, and check them."""
    for name in names or reg.names():
        try:
            typer.echo(f"{name}: {resolve(name)}")
        except DataFileError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
