"""The seed-data registry and its resolution: OPTIMAS_DATA_DIR, ../shared/data, the user's cache,
and downloads from a real HTTP server on 127.0.0.1 (the registry's base URL pointed at it)."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimas_cli import data_files
from optimas_cli import datasets_registry as reg
from optimas_cli.cli import app
from optimas_cli.config import PROJECT_CONFIGS
from optimas_cli.data import resolve_data_path
from optimas_cli.data_files import SHARED_DATA, DataFileError

SAMPLE = "hotpotqa/hotpot_distractor_sample.jsonl"  # 0.5 MB
DEV_1K = "hotpotqa/hotpot_dev_distractor_1k.jsonl"  # configs/hotpotqa.yaml reads it
ID_COLUMN = {"_id", "key", "task_id"}


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"seed data not found at {path}")
    return path


class Server:
    """http.server on 127.0.0.1 serving a folder, in a thread; counts the GET requests."""

    def __init__(self, root: Path):
        self.root, self.gets = root, []
        gets = self.gets

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                gets.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def hide_local_data(tmp_path: Path, monkeypatch) -> Path:
    """A new user's machine: OPTIMAS_DATA_DIR unset, ../shared hidden, an empty cache."""
    monkeypatch.delenv(data_files.DIR_ENV, raising=False)
    monkeypatch.delenv(reg.URL_ENV, raising=False)
    monkeypatch.setattr(data_files, "SHARED_DATA", tmp_path / "no_shared")
    cache = tmp_path / "cache"
    monkeypatch.setattr(data_files, "cache_dir", lambda: cache)
    return cache


@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """hide_local_data: the user's cache it leaves."""
    return hide_local_data(tmp_path, monkeypatch)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A mirror on 127.0.0.1 (empty until a test puts files in it) named by OPTIMAS_DATA_URL."""
    root = tmp_path / "mirror"
    root.mkdir()
    srv = Server(root)
    monkeypatch.setenv(reg.URL_ENV, srv.url)
    yield srv
    srv.close()


def serve(srv: Server, name: str, data: bytes) -> None:
    (srv.root / name).parent.mkdir(parents=True, exist_ok=True)
    (srv.root / name).write_bytes(data)


# ------------------------------------------------------------------ the registry


@pytest.mark.parametrize("name", reg.names())
def test_registry_matches_the_seed_files(name):
    """Size, sha256, rows and the selection's ids, against the files in ../shared/data."""
    path, e = shared(name), reg.entry(name)
    assert path.stat().st_size == e.size and data_files.sha256_of(path) == e.sha256
    ids = reg.selection_ids(name)
    assert len(ids) == e.rows == len(set(ids))
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert e.selection.by in ID_COLUMN
        assert [str(r[e.selection.by]) for r in rows] == ids  # the file's ids, in its order
    else:  # a CSV: rows of `via`, by 0-based data row, increasing (its order kept)
        with path.open(encoding="utf-8", newline="") as f:
            assert len(list(csv.DictReader(f))) == e.rows
        assert e.selection.by == "row" and e.via
        assert [int(i) for i in ids] == sorted(int(i) for i in ids)


def test_every_seed_data_path_is_registered():
    """What the configs and the seed loaders name by default is a registry name."""
    from systems.amazon.data import FILES
    from systems.bigcodebench.data import DEFAULT_PATH as BCB
    from systems.bigcodebench.data import HARD_PATH
    from systems.hotpotqa.data import DEFAULT_PATH as HOTPOT
    from systems.pubmedqa.data import DEFAULT_PATH as PUBMED
    from systems.pubmedqa.data import TEST_PATH

    for name in (*FILES.values(), BCB, HARD_PATH, HOTPOT, PUBMED, TEST_PATH, DEV_1K):
        assert reg.entry(name) is not None, name
    assert f"path: {DEV_1K}" in (PROJECT_CONFIGS / "hotpotqa.yaml").read_text()


def test_a_path_from_before_the_registry_pairs_with_its_name():
    """`optimas compare` pairs runs by their data block: an archived run's ../shared path and a
    new run's registry name are the same data; any other file is not."""
    old = {"path": f"../shared/data/{DEV_1K}", "test_size": 100}
    assert reg.with_registered_path(old) == {"path": DEV_1K, "test_size": 100}
    assert reg.with_registered_path({"path": DEV_1K}) == {"path": DEV_1K}
    mine = {"path": "/home/me/qa/questions.jsonl"}
    assert reg.with_registered_path(mine) == mine and reg.with_registered_path(None) is None


# ------------------------------------------------------------------ finding a file here


def test_shared_data_is_found_first_and_checked(seed_data, no_local_data, monkeypatch):
    monkeypatch.setattr(data_files, "SHARED_DATA", SHARED_DATA)
    assert data_files.resolve(SAMPLE) == shared(SAMPLE)
    assert resolve_data_path(SAMPLE, "unused", "hint") == shared(SAMPLE)
    assert not no_local_data.exists()  # nothing downloaded, nothing cached


def test_optimas_data_dir_is_the_only_place_looked_in(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    (mine / "hotpotqa").mkdir(parents=True)
    shutil.copy(shared(SAMPLE), mine / SAMPLE)
    monkeypatch.setenv(data_files.DIR_ENV, str(mine))
    monkeypatch.delenv(reg.URL_ENV, raising=False)
    assert data_files.resolve(SAMPLE) == mine / SAMPLE
    # no official file to build it from either (nothing listens on port 1)
    monkeypatch.setattr(reg.entry(DEV_1K), "source", "http://127.0.0.1:1/dev.json")
    with pytest.raises(DataFileError) as e:  # in ../shared/data, but not in OPTIMAS_DATA_DIR
        data_files.resolve(DEV_1K)
    assert str(mine / DEV_1K) in str(e.value) and str(SHARED_DATA) not in str(e.value)


def test_a_damaged_copy_fails_in_one_line_naming_it_and_the_fix(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    (mine / "hotpotqa").mkdir(parents=True)
    data = bytearray(shared(SAMPLE).read_bytes())
    data[100] ^= 1  # same size, another sha256
    (mine / SAMPLE).write_bytes(data)
    monkeypatch.setenv(data_files.DIR_ENV, str(mine))
    with pytest.raises(DataFileError) as e:
        data_files.resolve(SAMPLE)
    msg = str(e.value)
    assert "\n" not in msg and str(mine / SAMPLE) in msg and "sha256" in msg
    assert f"optimas data fetch {SAMPLE}" in msg
    (mine / SAMPLE).write_bytes(data[:1000])  # truncated: told by its size
    with pytest.raises(DataFileError, match="1000 bytes"):
        data_files.resolve(SAMPLE)


def test_an_explicit_path_is_read_as_it_is(tmp_path):
    own = tmp_path / "questions.jsonl"
    own.write_text('{"question": "q", "answer": "a", "context": []}\n')
    assert resolve_data_path(str(own), SAMPLE, "hint") == own
    with pytest.raises(FileNotFoundError, match="the hint"):
        resolve_data_path(str(tmp_path / "absent.jsonl"), SAMPLE, "the hint")


def test_missing_without_a_download_url_says_where_it_looked_and_what_to_run(no_local_data):
    """A file the registry cannot build (tests/test_data_derive.py: the ones it can)."""
    name = "bigcodebench/bigcodebench_hard.jsonl"
    with pytest.raises(DataFileError) as e:
        data_files.resolve(name)
    msg = str(e.value)
    assert "\n" not in msg and str(no_local_data / name) in msg
    assert reg.URL_ENV in msg and f"optimas data fetch {name}" in msg
    with pytest.raises(DataFileError, match="not a registered data file"):
        data_files.resolve("hotpotqa/nope.jsonl")


# ------------------------------------------------------------------ downloading


def test_download_is_checked_kept_and_not_repeated(no_local_data, server):
    serve(server, SAMPLE, shared(SAMPLE).read_bytes())
    path = data_files.resolve(SAMPLE)
    assert path == no_local_data / SAMPLE
    assert path.read_bytes() == shared(SAMPLE).read_bytes()
    assert server.gets == [f"/{SAMPLE}"]
    assert data_files.resolve(SAMPLE) == path and len(server.gets) == 1  # kept: no second GET
    assert resolve_data_path(SAMPLE, "unused", "hint") == path and len(server.gets) == 1


def test_a_corrupt_download_fails_in_one_line_and_is_not_kept(no_local_data, server):
    data = bytearray(shared(SAMPLE).read_bytes())
    data[-10] ^= 1
    serve(server, SAMPLE, bytes(data))
    with pytest.raises(DataFileError) as e:
        data_files.resolve(SAMPLE)
    msg = str(e.value)
    assert "\n" not in msg and "not kept" in msg and f"{server.url}/{SAMPLE}" in msg
    assert str(no_local_data / SAMPLE) in msg and f"optimas data fetch {SAMPLE}" in msg
    assert not (no_local_data / SAMPLE).exists()
    leftovers = [p for p in (no_local_data / "hotpotqa").iterdir() if p.suffix != ".lock"]
    assert leftovers == []  # no temporary file either
    serve(server, SAMPLE, shared(SAMPLE).read_bytes())  # the mirror repaired: the next try works
    assert data_files.resolve(SAMPLE).read_bytes() == shared(SAMPLE).read_bytes()


def test_a_file_the_mirror_lacks_fails_in_one_line(no_local_data, server):
    with pytest.raises(DataFileError) as e:
        data_files.resolve(SAMPLE)
    assert "\n" not in str(e.value) and "404" in str(e.value)
    assert not (no_local_data / SAMPLE).exists()


def test_optimas_data_fetch_and_list(no_local_data, server):
    serve(server, SAMPLE, shared(SAMPLE).read_bytes())
    runner = CliRunner()
    listed = runner.invoke(app, ["data", "list"])
    assert listed.exit_code == 0 and f"{SAMPLE}\t80 rows" in listed.output
    assert "missing" in listed.output.splitlines()[reg.names().index(SAMPLE)]
    fetched = runner.invoke(app, ["data", "fetch", SAMPLE])
    assert fetched.exit_code == 0, fetched.output
    assert f"{SAMPLE}: {no_local_data / SAMPLE}" in fetched.output
    listed = runner.invoke(app, ["data", "list"])
    assert str(no_local_data / SAMPLE) in listed.output.splitlines()[reg.names().index(SAMPLE)]
    failed = runner.invoke(app, ["data", "fetch", DEV_1K])  # the mirror lacks it
    assert failed.exit_code == 1 and "error:" in failed.output and "404" in failed.output


@pytest.mark.slow
def test_evaluate_hotpotqa_on_a_new_machine_downloads_then_runs(no_local_data, server, tmp_path):
    """The issue's done-when: ../shared hidden, the registry's base URL at a local mirror of the
    real 1k file: `optimas evaluate configs/hotpotqa.yaml data.test_size=5` downloads it,
    checks it and runs on the embedded model."""
    serve(server, DEV_1K, shared(DEV_1K).read_bytes())
    result = CliRunner().invoke(app, ["evaluate", str(PROJECT_CONFIGS / "hotpotqa.yaml"),
                                      "data.test_size=5", f"run_root={tmp_path / 'runs'}", "-q"])
    assert result.exit_code == 0, result.output
    assert server.gets == [f"/{DEV_1K}"]
    assert data_files.sha256_of(no_local_data / DEV_1K) == reg.entry(DEV_1K).sha256
    (run,) = (tmp_path / "runs" / "hotpotqa").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 5 and metrics["failed"] == 0
