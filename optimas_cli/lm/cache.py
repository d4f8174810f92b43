"""Persistent LM response cache, shared by every model and every process.

Storage: one SQLite file in WAL mode. Chosen over one-file-per-key because a
run makes tens of thousands of small entries (files would flood the directory
and make cleanup/copying slow), while SQLite gives atomic upserts, concurrent
readers alongside one writer, and cross-process locking with a busy timeout.
Each thread (and each process, after fork) opens its own connection, since a
sqlite3 connection must not be shared across threads or carried over a fork.
WAL needs a local filesystem (not NFS); point `lm.cache.dir` at local disk.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .base import LMRequest, LMResponse
from .config import CacheConfig

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    created REAL NOT NULL,
    request TEXT NOT NULL
)
"""
DB_NAME = "responses.sqlite3"


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
        # isolation_level=None: autocommit, each statement is its own transaction.
        # check_same_thread=False only so close() may close it; queries stay per thread.
        conn = sqlite3.connect(
            self.path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL, much faster
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute(_SCHEMA)
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._conns_lock:
            self._conns.append((os.getpid(), conn))
        return conn

    def get(self, request: LMRequest, route: dict[str, Any] | None = None) -> LMResponse | None:
        """The cached response (cached=True, latency 0), or None on a miss."""
        row = self._conn().execute(
            "SELECT text, prompt_tokens, completion_tokens, cost_usd FROM responses WHERE key=?",
            (request.key(route),),
        ).fetchone()
        if row is None:
            return None
        text, pt, ct, cost = row
        return LMResponse(
            text=text,
            prompt_tokens=pt,
            completion_tokens=ct,
            latency_s=0.0,
            cost_usd=cost,
            cached=True,
        )

    def put(self, request: LMRequest, response: LMResponse,
            route: dict[str, Any] | None = None) -> None:
        """Insert or overwrite the entry for this request."""
        self._conn().execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.key(route),
                request.model,
                response.text,
                int(response.prompt_tokens),
                int(response.completion_tokens),
                float(response.cost_usd),
                time.time(),
                json.dumps(request.canonical(route), sort_keys=True, ensure_ascii=False),
            ),
        )

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
