"""The response cache is right or silent: an entry whose bytes changed after it was written is
never served (a miss, asked again, logged), a file SQLite cannot read is named with the way to
rebuild it, a cache from before checksums keeps serving its entries, and processes that open
a new cache at once do not race."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3

import pytest
from reliability_log import record

from optimas_cli.lm import CacheUnreadable, LMClient, LMConfig, LMError, LMRequest, LMResponse
from optimas_cli.lm.cache import DB_NAME, ResponseCache
from optimas_cli.lm.config import CacheConfig

MODEL = "openai/gpt-4o-mini"
REQ = LMRequest(model=MODEL, prompt="Who made Wallace and Gromit? Answer briefly.")
REPLY = "Nick Park"


def record_one(mock_api, make_cfg):
    """A real cache file under make_cfg's dir holding REQ -> REPLY, all of it in the main file
    (the last connection closed: the WAL checkpointed). The model answers REPLY the first
    time and "fresh" after. Returns the api, the file and the entry's key."""
    replies = iter([REPLY])
    api = mock_api(lambda req, attempt: next(replies, "fresh"))
    lm = api.client(make_cfg("on"))
    assert lm.complete(REQ).text == REPLY
    lm.close()
    path = lm.cache.path
    assert not path.with_name(DB_NAME + "-wal").exists()
    with sqlite3.connect(path) as db:
        (key,), = db.execute("SELECT key FROM responses").fetchall()
    return api, path, key


def flip_byte_in_reply(path) -> None:
    """Flip one byte of the stored reply in the file itself, as a bad disk or a stray write
    would: 'Nick Park' becomes 'Nick oark'. SQLite's integrity_check still says ok."""
    data = bytearray(path.read_bytes())
    at = data.find(REPLY.encode())
    assert at > 0 and data.count(REPLY.encode()) == 1
    data[at + 5] ^= ord("P") ^ ord("o")
    path.write_bytes(bytes(data))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT text FROM responses").fetchone() == ("Nick oark",)


def edit_with_sqlite(sql: str):
    def edit(path) -> None:
        with sqlite3.connect(path) as db:
            assert db.execute(sql).rowcount == 1
    return edit


EDITS = {
    "one byte flipped in the file": flip_byte_in_reply,
    "text changed with sqlite3": edit_with_sqlite("UPDATE responses SET text = 'Nick Parks'"),
    "token count changed": edit_with_sqlite("UPDATE responses SET completion_tokens = 99"),
    "cost changed": edit_with_sqlite("UPDATE responses SET cost_usd = 12.5"),
    "checksum removed": edit_with_sqlite("UPDATE responses SET checksum = NULL"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_corrupt_entry_is_asked_again_never_served(edit, mock_api, make_cfg, caplog):
    api, path, key = record_one(mock_api, make_cfg)
    EDITS[edit](path)
    lm = api.client(make_cfg("on"))
    with caplog.at_level(logging.WARNING, logger="optimas_cli.lm.cache"):
        again = lm.complete(REQ)
    record("cache_corrupt", case=edit, served_wrong=int(again.cached or again.text != "fresh"))
    assert not again.cached and again.text == "fresh" and api.calls == 2  # the model, again
    warning = caplog.text
    assert str(path) in warning and key[:16] in warning
    assert "corrupt" in warning
    healed = lm.complete(REQ)  # the fresh answer replaced the corrupt entry
    assert healed.cached and healed.text == "fresh" and api.calls == 2
    total = lm.usage_summary()["total"]
    assert (total["calls"], total["cache_hits"]) == (1, 1)


def test_a_corrupt_entry_in_replay_is_an_error_naming_the_entry(mock_api, make_cfg):
    api, path, key = record_one(mock_api, make_cfg)
    flip_byte_in_reply(path)
    lm = api.client(make_cfg("replay"))
    with pytest.raises(LMError) as e:
        lm.complete(REQ)
    message = str(e.value)
    assert "corrupt entry" in message and key[:16] in message
    assert str(path) in message and "Wallace and Gromit" in message
    assert api.calls == 1  # a replay never asks the model


@pytest.mark.parametrize("content", [b"garbage " * 1000, b"SQLite format 3\x00" + b"\xff" * 4080])
def test_a_garbage_cache_file_is_named_with_the_way_to_rebuild_it(content, tmp_path):
    path = tmp_path / DB_NAME
    path.write_bytes(content)
    with pytest.raises(CacheUnreadable) as e:
        LMClient(LMConfig(cache={"mode": "on", "dir": str(tmp_path)}))
    message = str(e.value)
    assert str(path) in message and "file is not a database" in message
    assert f"mv {path} {path}.broken" in message and "delete it" in message


def test_a_damaged_page_stops_the_lookup_naming_the_file(tmp_path):
    """Pages after the first (the table and its key index) overwritten: the cache opens, and
    the first lookup that needs them raises CacheUnreadable (a RunStopped), not a failure of
    one example."""
    cache = ResponseCache(CacheConfig(dir=str(tmp_path)))
    reqs = [LMRequest(model="m", prompt=f"question {i} " * 40) for i in range(12)]
    for i, r in enumerate(reqs):
        cache.put(r, LMResponse(text=f"answer {i}"))
    cache.close()
    data = bytearray(cache.path.read_bytes())
    assert len(data) > 3 * 4096
    data[4096:] = bytes((i * 131 + 7) % 256 for i in range(len(data) - 4096))
    cache.path.write_bytes(bytes(data))
    broken = ResponseCache(CacheConfig(dir=str(tmp_path)))
    with pytest.raises(CacheUnreadable) as e:
        broken.get(reqs[3])
    assert str(cache.path) in str(e.value) and "malformed" in str(e.value)
    assert f"mv {cache.path}" in str(e.value)
    broken.close()


LEGACY_SCHEMA = """CREATE TABLE responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL, created REAL NOT NULL, request TEXT NOT NULL)"""


def test_a_cache_from_before_checksums_is_served_then_guarded(tmp_path):
    """A legacy file (no checksum column, as bench/reproduce/responses.sqlite3 was recorded)
    gets its checksums when first opened: its entries are served as recorded, and a change
    to one of them afterwards is caught."""
    reqs = [LMRequest(model="local/x", prompt=f"Q{i}") for i in range(3)]
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute(LEGACY_SCHEMA)
        for i, r in enumerate(reqs):
            db.execute("INSERT INTO responses VALUES (?, 'local/x', ?, 5, 2, 0.0, 0.0, '{}')",
                       (r.key(), f"legacy answer {i}"))
    cache = ResponseCache(CacheConfig(dir=str(tmp_path), mode="replay"))
    assert [cache.get(r).text for r in reqs] == ["legacy answer 0", "legacy answer 1",
                                                 "legacy answer 2"]
    assert cache.get(reqs[1]).completion_tokens == 2
    cache.close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT COUNT(*) FROM responses WHERE checksum IS NULL").fetchone() == (0,)
        db.execute("UPDATE responses SET text = 'legacy answer X' WHERE key = ?", (reqs[1].key(),))
    cache = ResponseCache(CacheConfig(dir=str(tmp_path), mode="replay"))
    assert cache.get(reqs[1]) is None and cache.get(reqs[0]).text == "legacy answer 0"
    cache.close()


def _open_new_caches(dirs, barrier, errors) -> None:
    """One of eight processes: for each directory, wait for the others, then open (create)
    the cache there at the same moment and write one entry."""
    for i, d in enumerate(dirs):
        barrier.wait(timeout=120)
        try:
            cache = ResponseCache(CacheConfig(dir=d))
            cache.put(LMRequest(model="m", prompt=f"{multiprocessing.current_process().name}"),
                      LMResponse(text=str(i)))
            cache.close()
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
            errors.put(f"{d}: {type(e).__name__}: {e}")


def test_eight_processes_creating_a_cache_at_once(tmp_path):
    """Eight spawned processes open a new cache at the same moment, 20 times over (on the
    old code, `PRAGMA journal_mode=WAL` failed with "database is locked" in most runs)."""
    ctx = multiprocessing.get_context("spawn")
    dirs = [str(tmp_path / f"c{i}") for i in range(20)]
    barrier, errors = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_open_new_caches, args=(dirs, barrier, errors), name=f"p{n}")
             for n in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 8
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    for d in dirs:
        with sqlite3.connect(f"{d}/{DB_NAME}") as db:
            assert db.execute("SELECT COUNT(*) FROM responses").fetchone() == (8,)
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
