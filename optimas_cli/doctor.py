"""`optimas doctor`: what this machine gives a run, checked, one line per fact.

- sandbox: the mode model-written code runs in here (bwrap, or why only rlimits), and what
  bounds a run's memory and processes (a cgroup per run, or per process only);
- models: each embedded model's GGUF file (assembled on first use, as a run would);
- cache: the LM cache file, its entry count, SQLite's quick_check and every entry's
  checksum (a corrupt entry is never served, but it is counted here).

It exits 1 when something a run needs is broken (an unreadable cache, no model file at
all), 0 otherwise; a weaker sandbox mode is a warning, not a failure.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import typer

OK, WARN, BAD = "ok", "warn", "bad"


@dataclass
class Check:
    area: str
    status: str  # ok | warn | bad
    text: str


def sandbox_checks() -> list[Check]:
    from optimas_cli.sandbox import Sandbox, cgroups

    problem = Sandbox(mode="rlimits").why_not_bwrap()
    if problem is None:
        mode = Check("sandbox", OK, "mode bwrap (namespaces: no network, no host files)")
    else:
        mode = Check("sandbox", WARN, f"mode rlimits only: {problem}; install bubblewrap "
                     "(apt-get install bubblewrap) for bwrap mode")
    kind, why = cgroups.support()
    bounds = cgroups.describe()
    return [mode, Check("sandbox", OK if kind else WARN, f"memory_mb: {bounds['memory_mb']}"),
            Check("sandbox", OK if kind else WARN, f"max_processes: {bounds['max_processes']}")]


def model_checks() -> list[Check]:
    from optimas_cli.lm.local import LOCAL_MODELS, LOCAL_PREFIX

    found = []
    for name, spec in LOCAL_MODELS.items():
        try:
            path = spec.gguf()
            size = path.stat().st_size / 1e6
            found.append(Check("models", OK, f"{LOCAL_PREFIX}{name}: {path} ({size:.0f} MB)"))
        except Exception as e:  # noqa: BLE001 - a missing package or file is what we report
            found.append(Check("models", WARN, f"{LOCAL_PREFIX}{name}: {e}"))
    if all(c.status != OK for c in found):
        found.append(Check("models", BAD, "no embedded model is available"))
    return found


def cache_checks(cache_dir: Path | None) -> list[Check]:
    from optimas_cli.lm.cache import DB_NAME, default_cache_dir, entry_checksum

    path = (cache_dir or default_cache_dir()) / DB_NAME
    if not path.exists():
        return [Check("cache", OK, f"{path}: none yet (the first run makes it)")]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        quick = conn.execute("PRAGMA quick_check").fetchone()[0]
        rows = conn.execute("SELECT key, CAST(text AS BLOB), prompt_tokens, completion_tokens, "
                            "cost_usd, checksum FROM responses")
        total = corrupt = 0
        for key, raw, pt, ct, cost, checksum in rows:
            total += 1
            try:
                corrupt += checksum != entry_checksum(key, raw, pt, ct, cost)
            except (TypeError, ValueError):
                corrupt += 1
        conn.close()
    except sqlite3.Error as e:
        return [Check("cache", BAD, f"{path}: unreadable ({e}); rebuild it: mv {path} "
                      f"{path}.broken; rm -f {path}-wal {path}-shm")]
    if quick != "ok":
        return [Check("cache", BAD, f"{path}: SQLite quick_check: {quick}")]
    status = WARN if corrupt else OK
    tail = f", {corrupt} fail their checksum (never served: asked again)" if corrupt else ""
    return [Check("cache", status, f"{path}: {total} entries, quick_check ok{tail}")]


CACHE_DIR = typer.Option(None, "--cache-dir", help="The LM cache dir to check (default: the one a "
                         "run uses, $OPTIMAS_CACHE_DIR/lm or the user cache)")


def register(app: typer.Typer) -> None:
    """Add `optimas doctor` to the typer app."""

    @app.command(name="doctor")
    def doctor_command(cache_dir: Path | None = CACHE_DIR):
        """Check what this machine gives a run: the sandbox mode and its per-run bounds, the
        embedded models, and the LM cache's health. Exits 1 if something a run needs is
        broken."""
        from rich.markup import escape

        from optimas_cli.console import make_console

        console = make_console()
        colour = {OK: "green", WARN: "yellow", BAD: "red"}
        checks = [*sandbox_checks(), *model_checks(), *cache_checks(cache_dir)]
        for c in checks:
            console.print(f"[{colour[c.status]}]{c.status:4}[/] {c.area:8} {escape(c.text)}",
                          soft_wrap=True, highlight=False)
        if any(c.status == BAD for c in checks):
            raise typer.Exit(1)
