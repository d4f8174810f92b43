"""Building a registered file from its official file when no mirror is set: a real HTTP server on
127.0.0.1 serves a synthetic "official" file made of the real seed rows, decoys and another
layout (the official one), ../shared is hidden; the built file must be the seed file's bytes."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pytest
from test_data_files import DEV_1K, SAMPLE, Server, hide_local_data, shared
from typer.testing import CliRunner

from optimas_cli import data_derive, data_files
from optimas_cli import datasets_registry as reg
from optimas_cli.cli import app
from optimas_cli.data_files import DataFileError

BUILT = [n for n in reg.names() if reg.entry(n).build is not None]
NOT_BUILT = [n for n in reg.names() if reg.entry(n).build is None]
TRAIN_305 = "hotpotqa/hotpot_train_distractor_305.jsonl"
OFFICIAL_KEYS = ["_id", "answer", "question", "supporting_facts", "context", "type", "level"]


@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """A new user's machine (../shared hidden, OPTIMAS_DATA_DIR unset): its empty cache."""
    return hide_local_data(tmp_path, monkeypatch)


@pytest.fixture
def official(tmp_path, monkeypatch):
    """A server on 127.0.0.1 for official files; no mirror (OPTIMAS_DATA_URL unset)."""
    monkeypatch.delenv(reg.URL_ENV, raising=False)
    root = tmp_path / "official_site"
    root.mkdir()
    srv = Server(root)
    yield srv
    srv.close()


def publish(srv: Server, monkeypatch, name: str, data: bytes) -> str:
    """Serve `data` as the entry's official file and point the registry's URL at it."""
    e = reg.entry(name)
    file_name = PurePosixPath(urlparse(e.official_url).path).name
    (srv.root / file_name).write_bytes(data)
    monkeypatch.setattr(e, "via" if e.via else "source", f"{srv.url}/{file_name}")
    return f"/{file_name}"


def seed_rows(name: str) -> list[dict]:
    return [json.loads(line) for line in shared(name).read_text(encoding="utf-8").splitlines()]


def official_bytes(name: str, rows: list | None = None, seed: int = 0) -> bytes:
    """An official file holding the seed file's rows (or `rows`) among decoys, in the official
    layout: HotpotQA a JSON array, keys in the official order, ASCII-escaped, no spaces, rows
    shuffled; PubMedQA JSON lines, ASCII-escaped, shuffled; Amazon a CSV with "\\n" row ends,
    the seed rows at the data rows the registry names."""
    e, rng = reg.entry(name), random.Random(seed)
    if e.build.format == "csv":
        with shared(name).open(encoding="utf-8", newline="") as f:
            header, *kept = list(csv.reader(f))
        at = dict(zip((int(i) for i in reg.selection_ids(name)), kept, strict=True))
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for n in range(max(at) + 8):
            writer.writerow(at.get(n, [f"decoy question {n}", "['a', 'b']", "0"]))
        return out.getvalue().encode()
    rows = list(seed_rows(name) if rows is None else rows)
    by = e.selection.by
    decoys = [{**r, by: f"decoy{n}", "question": f"decoy {n}?"} for n, r in enumerate(rows[:40])]
    rows = rows + decoys
    rng.shuffle(rows)
    if e.build.format == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    rows = [{k: r[k] for k in OFFICIAL_KEYS} for r in rows]
    return json.dumps(rows, separators=(",", ":")).encode()


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix != ".lock"] if folder.exists() else []


@pytest.mark.parametrize("name", BUILT)
def test_a_file_is_built_from_its_official_file_byte_for_byte(name, no_local_data, official,
                                                              monkeypatch):
    got = publish(official, monkeypatch, name, official_bytes(name))
    path = data_files.resolve(name)
    assert path == no_local_data / name
    assert path.read_bytes() == shared(name).read_bytes()  # hence the registry's sha256
    assert official.gets == [got]
    kept = data_derive.official_path(reg.entry(name), no_local_data / "official")
    assert kept.is_file() and kept.parent == no_local_data / "official" / Path(name).parent
    assert data_files.resolve(name) == path and official.gets == [got]  # nothing downloaded
    path.unlink()  # built again from the kept official file, still without a download
    assert data_files.resolve(name).read_bytes() == shared(name).read_bytes()
    assert official.gets == [got]
    assert sorted(leftovers(path.parent)) == [path]  # no temporary file left


def test_the_dev_file_and_its_sample_share_one_download(no_local_data, official, monkeypatch):
    data = official_bytes(DEV_1K)
    got = publish(official, monkeypatch, DEV_1K, data)
    publish(official, monkeypatch, SAMPLE, data)
    result = CliRunner().invoke(app, ["data", "fetch", SAMPLE, DEV_1K])
    assert result.exit_code == 0, result.output
    assert f"{SAMPLE}: {no_local_data / SAMPLE}" in result.output
    assert official.gets == [got]
    for name in (SAMPLE, DEV_1K):
        assert (no_local_data / name).read_bytes() == shared(name).read_bytes()


def test_an_official_file_missing_an_id_fails_in_one_line_naming_it(no_local_data, official,
                                                                     monkeypatch):
    rows = seed_rows(SAMPLE)
    gone = rows.pop(37)["_id"]
    publish(official, monkeypatch, SAMPLE, official_bytes(SAMPLE, rows))
    with pytest.raises(DataFileError) as e:
        data_files.resolve(SAMPLE)
    msg = str(e.value)
    assert "\n" not in msg and f"_id {gone} of " in msg and "more" not in msg
    assert "hotpot_distractor_sample.ids" in msg and reg.URL_ENV in msg
    assert data_files.DIR_ENV in msg and f"optimas data fetch {SAMPLE}" in msg
    assert not (no_local_data / SAMPLE).exists() and leftovers(no_local_data / "hotpotqa") == []


def test_a_different_official_file_is_not_kept_and_deleting_it_recovers(no_local_data, official,
                                                                        monkeypatch):
    """The official file's own hash is unknown: what is checked is the built file."""
    rows = seed_rows(SAMPLE)
    rows[5] = {**rows[5], "level": "easy"}  # same size, another sha256
    publish(official, monkeypatch, SAMPLE, official_bytes(SAMPLE, rows))
    with pytest.raises(DataFileError) as e:
        data_files.resolve(SAMPLE)
    msg = str(e.value)
    kept = data_derive.official_path(reg.entry(SAMPLE), no_local_data / "official")
    assert "\n" not in msg and "not kept" in msg and f"delete {kept}" in msg and "sha256" in msg
    assert not (no_local_data / SAMPLE).exists() and leftovers(no_local_data / "hotpotqa") == []
    got = publish(official, monkeypatch, SAMPLE, official_bytes(SAMPLE))  # the right release
    with pytest.raises(DataFileError, match="not kept"):  # the kept wrong copy is read again
        data_files.resolve(SAMPLE)
    assert official.gets == [got]
    kept.unlink()  # as the message says
    assert data_files.resolve(SAMPLE).read_bytes() == shared(SAMPLE).read_bytes()
    assert official.gets == [got, got]


def test_a_cut_short_official_file_fails_in_one_line(no_local_data, official, monkeypatch):
    data = official_bytes(SAMPLE)
    publish(official, monkeypatch, SAMPLE, data[: len(data) // 2])
    with pytest.raises(DataFileError) as e:
        data_files.resolve(SAMPLE)
    assert "\n" not in str(e.value) and "cut short" in str(e.value)
    assert not (no_local_data / SAMPLE).exists()


def test_a_json_array_is_read_item_by_item_across_reads(tmp_path, monkeypatch):
    items = [{"_id": str(n), "text": "ä" * (n * 37 % 500), "n": [n, {"k": "]"}]} for n in range(60)]
    path = tmp_path / "a.json"
    path.write_text(" \n" + json.dumps(items, indent=1), encoding="utf-8")
    monkeypatch.setattr(data_derive, "CHUNK", 97)  # items cut by many reads
    assert list(data_derive.json_array(path)) == items
    path.write_text("[]", encoding="utf-8")
    assert list(data_derive.json_array(path)) == []
    path.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(data_derive.BuildError, match="not a JSON array"):
        list(data_derive.json_array(path))


def test_an_official_file_that_cannot_be_downloaded_fails_in_one_line(no_local_data, official,
                                                                       monkeypatch):
    e = reg.entry(SAMPLE)
    monkeypatch.setattr(e, "source", f"{official.url}/absent.json")  # 404
    with pytest.raises(DataFileError) as err:
        data_files.resolve(SAMPLE)
    msg = str(err.value)
    assert "\n" not in msg and "404" in msg and f"{official.url}/absent.json" in msg
    assert not (no_local_data / SAMPLE).exists()
    assert not data_derive.official_path(e, no_local_data / "official").exists()


@pytest.mark.parametrize("name", NOT_BUILT)
def test_a_file_that_cannot_be_built_says_why_and_downloads_nothing(name, no_local_data,
                                                                    official):
    with pytest.raises(DataFileError) as e:
        data_files.resolve(name)
    msg = str(e.value)
    assert "\n" not in msg and f"cannot be built here ({reg.entry(name).no_build})" in msg
    assert reg.URL_ENV in msg and data_files.DIR_ENV in msg and official.gets == []
    assert not no_local_data.exists()
