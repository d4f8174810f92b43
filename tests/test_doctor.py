"""`optimas doctor` reports the sandbox mode and its bounds, the embedded models and the LM
cache's health, and fails only when something a run needs is broken."""

from __future__ import annotations

import sqlite3

from typer.testing import CliRunner

from optimas_cli.cli import app
from optimas_cli.lm import LMRequest, LMResponse
from optimas_cli.lm.cache import DB_NAME, ResponseCache
from optimas_cli.lm.config import CacheConfig
from optimas_cli.sandbox import Sandbox, cgroups


def make_cache(tmp_path, n: int = 3):
    cache = ResponseCache(CacheConfig(mode="on", dir=str(tmp_path)))
    for i in range(n):
        cache.put(LMRequest(model="openai/gpt-4o-mini", prompt=f"q{i}"),
                  LMResponse(text=f"answer {i}", prompt_tokens=3, completion_tokens=2))
    cache.close()
    return tmp_path / DB_NAME


def doctor(tmp_path):
    return CliRunner().invoke(app, ["doctor", "--cache-dir", str(tmp_path)])


def test_a_healthy_machine(tmp_path):
    make_cache(tmp_path)
    r = doctor(tmp_path)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    mode = Sandbox().resolved
    assert any(f"mode {mode}" in line for line in lines if "sandbox" in line), r.output
    kind, _ = cgroups.support()
    memory = next(line for line in lines if "memory_mb:" in line)
    assert ("whole run" in memory) == (kind is not None)
    assert "3 entries, quick_check ok" in r.output
    assert "local/smollm2-135m-instruct" in r.output  # every registered model has a line


def test_a_changed_entry_is_counted(tmp_path):
    path = make_cache(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE responses SET text = 'answer 9' WHERE text = 'answer 1'")
    r = doctor(tmp_path)
    assert r.exit_code == 0, r.output  # served never: a miss, asked again; a warning here
    assert "3 entries, quick_check ok, 1 fail their checksum" in r.output


def test_an_unreadable_cache_fails_and_says_how_to_rebuild_it(tmp_path):
    path = make_cache(tmp_path)
    path.write_bytes(b"not a database" * 100)
    r = doctor(tmp_path)
    assert r.exit_code == 1
    assert str(path) in r.output and "unreadable" in r.output and "mv " in r.output
