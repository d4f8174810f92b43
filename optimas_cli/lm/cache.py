"""Persistent LM response cache, shared by every model and every process.

Storage: one SQLite file in WAL mode. Chosen over one-file-per-key because a
run makes tens of thousands of small entries (files would flood the directory
and make cleanup/copying slow), while SQLite gives atomic upserts, concurrent
readers alongside one writer, and cross-process locking with a busy timeout.
Each thread (and each process, after fork) opens its own connection, since a
sqlite3 connection must not be shared across threads or carried over a fork.
WAL needs a local filesystem (not NFS); point `lm.cache.dir` at local disk.

Integrity: every entry carries `checksum`, the sha256 of its key and everything it serves
(entry_checksum). An entry whose checksum does not match is a miss (logged, asked again,
never served); SQLite's own integrity_check does not see a flipped byte inside a value. A
cache from before checksums is migrated when it is first opened: the column is added and
filled in from the entries as they stand (they are trusted once, as recorded; from then on
a change to any of them is caught). A file SQLite cannot read raises CacheUnreadable (a
RunStopped), naming the file and how to rebuild it. Opening (WAL switch, schema,
migration) happens under a file lock, so processes that open a new cache at once do not
race on `PRAGMA journal_mode=WAL`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .base import CacheUnreadable, LMRequest, LMResponse
from .config import CacheConfig

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    created REAL NOT NULL,
    request TEXT NOT NULL,
    checksum TEXT
)
"""
DB_NAME = "responses.sqlite3"
_CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}  # the file itself is damaged


def entry_checksum(key: str | bytes, text: bytes, prompt_tokens: int, completion_tokens: int,
                   cost_usd: float) -> str:
    """sha256 over an entry's key and every field a hit serves (text as its UTF-8 bytes)."""
    h = hashlib.sha256(key if isinstance(key, bytes) else key.encode("utf-8"))
    h.update(f"\0{int(prompt_tokens)}\0{int(completion_tokens)}\0{float(cost_usd).hex()}\0"
             .encode())
    h.update(text)
    return h.hexdigest()


def _migrate(conn: sqlite3.Connection) -> None:
    """Give a cache from before checksums its `checksum` column, filled in for every entry."""
    if "checksum" in {row[1] for row in conn.execute("PRAGMA table_info(responses)")}:
        return
    conn.create_function("optimas_entry_checksum", 5, entry_checksum, deterministic=True)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE responses ADD COLUMN checksum TEXT")
        conn.execute("UPDATE responses SET checksum = optimas_entry_checksum(CAST(key AS BLOB), "
                     "CAST(text AS BLOB), prompt_tokens, completion_tokens, cost_usd)")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def default_cache_dir() -> Path:
    """Default LM response dir: $OPTIMAS_CACHE_DIR/lm, else user cache dir/optimas/lm."""
    root = os.environ.get("OPTIMAS_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "lm"
    import platformdirs

    return Path(platformdirs.user_cache_dir("optimas")) / "lm"


class ResponseCache:
    """Key (request.key(route)) -> stored LMResponse fields; thread- and process-safe.

    `route` (LMRequest.canonical): where an API request is sent; part of the key, so an
    answer from one server is never served for another (LMClient passes it)."""

    def __init__(self, cfg: CacheConfig) -> None:
        self.mode = cfg.mode
        self.dir = Path(cfg.dir).expanduser() if cfg.dir else default_cache_dir()
        self.path = self.dir / DB_NAME
        self._local = threading.local()
        self._conns: list[tuple[int, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        if self.mode != "off":
            self.dir.mkdir(parents=True, exist_ok=True)
            self._conn()  # create the schema now so a bad dir fails early

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        from filelock import FileLock, Timeout

        # isolation_level=None: autocommit, each statement is its own transaction.
        # check_same_thread=False only so close() may close it; queries stay per thread.
        conn = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        try:  # one opener at a time: concurrent WAL switches on a new file raced ("locked")
            with FileLock(str(self.path) + ".lock", timeout=120):
                conn.execute("PRAGMA busy_timeout=60000")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL, much faster
                conn.execute(_SCHEMA)
                _migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._unreadable(exc) from exc
        except Timeout as exc:
            conn.close()
            raise CacheUnreadable(f"LM cache {self.path}: another process held {exc.lock_file} "
                                  f"for 120 s while opening it; is one stuck?") from exc
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._conns_lock:
            self._conns.append((os.getpid(), conn))
        return conn

    def _unreadable(self, exc: sqlite3.Error) -> CacheUnreadable:
        """The error for a cache file SQLite cannot use: the file, the cause, the way out."""
        name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
        p = self.path
        if name in _CORRUPT or type(exc) is sqlite3.DatabaseError:
            how = (f"rebuild it: move it aside (mv {p} {p}.broken; rm -f {p}-wal {p}-shm) or "
                   f"delete it; the next run starts an empty cache")
        else:
            how = "fix the cause (disk space, permissions, another process holding it)"
        return CacheUnreadable(f"LM cache {p} is unreadable ({name}: {exc}); {how}")

    def lookup(self, request: LMRequest,
               route: dict[str, Any] | None = None) -> tuple[LMResponse | None, bool]:
        """(the cached response (cached=True, latency 0) or None on a miss, whether the
        entry was there but corrupt). A corrupt entry is logged and never served."""
        key = request.key(route)
        try:
            row = self._conn().execute(
                "SELECT CAST(text AS BLOB), prompt_tokens, completion_tokens, cost_usd, checksum "
                "FROM responses WHERE key=?", (key,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from exc
        if row is None:
            return None, False
        raw, pt, ct, cost, checksum = row
        try:
            if checksum != entry_checksum(key, raw, pt, ct, cost):
                raise ValueError("checksum mismatch")
            return LMResponse(text=raw.decode("utf-8"), prompt_tokens=int(pt),
                              completion_tokens=int(ct), latency_s=0.0, cost_usd=float(cost),
                              cached=True), False
        except (TypeError, ValueError):  # a mismatch, or a value of the wrong type or encoding
            log.warning("LM cache %s: entry %s... fails its checksum (corrupt); not served, "
                        "treated as a miss", self.path, key[:16])
            return None, True

    def get(self, request: LMRequest, route: dict[str, Any] | None = None) -> LMResponse | None:
        """The cached response (cached=True, latency 0), or None on a miss (a corrupt entry
        is a miss)."""
        return self.lookup(request, route)[0]

    def put(self, request: LMRequest, response: LMResponse,
            route: dict[str, Any] | None = None) -> None:
        """Insert or overwrite the entry for this request (with its checksum). A damaged file
        raises CacheUnreadable; any other SQLite error (disk full, locked) propagates."""
        key, text = request.key(route), response.text
        pt, ct, cost = int(response.prompt_tokens), int(response.completion_tokens), \
            float(response.cost_usd)
        checksum = entry_checksum(key, text.encode("utf-8"), pt, ct, cost)
        try:
            self._conn().execute(
                "INSERT OR REPLACE INTO responses (key, model, text, prompt_tokens, "
                "completion_tokens, cost_usd, created, request, checksum) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, request.model, text, pt, ct, cost, time.time(),
                 json.dumps(request.canonical(route), sort_keys=True, ensure_ascii=False),
                 checksum),
            )
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", "") in _CORRUPT or type(exc) is sqlite3.DatabaseError:
                raise self._unreadable(exc) from exc
            raise

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        """Close every connection this object opened in this process."""
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for pid, conn in conns:
            if pid == os.getpid():  # never touch a connection inherited over fork
                conn.close()
        self._local = threading.local()
