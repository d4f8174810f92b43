"""JSON lines that survive a kill: a torn last line is never read as a record, the next
append cuts it off instead of gluing onto it, and concurrent writers never interleave."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from optimas_cli import jsonl
from optimas_cli.run_dir import RunDir

RECORDS = [{"i": i, "text": "x" * i} for i in range(5)]


def write(path: Path, records) -> bytes:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(data)
    return data


def test_a_torn_last_line_is_skipped_then_cut_off_by_the_next_append(tmp_path):
    path = tmp_path / "history.jsonl"
    intact = write(path, RECORDS)
    with path.open("ab") as f:
        f.write(b'{"i": 5, "text": "xx')  # killed in the middle of writing record 5
    assert jsonl.read(path) == RECORDS
    rd = RunDir(tmp_path)
    rd.append_jsonl("history.jsonl", {"i": 6})
    assert path.read_bytes() == intact + b'{"i": 6}\n'
    assert rd.read_jsonl("history.jsonl") == [*RECORDS, {"i": 6}]
    rd.append_jsonl("history.jsonl", {"i": 7})  # later appends leave the file alone
    assert rd.read_jsonl("history.jsonl")[-2:] == [{"i": 6}, {"i": 7}]


def test_repair_of_files_without_a_whole_line_and_of_intact_files(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"i": 0')
    assert jsonl.repair(path) == 7 and path.read_bytes() == b""
    intact = write(path, RECORDS)
    assert jsonl.repair(path) == 0 and path.read_bytes() == intact
    big = {"blob": "y" * 200_000}  # the last newline is more than one read chunk back
    data = write(path, [RECORDS[0], big]).rstrip(b"\n")
    path.write_bytes(data)
    assert jsonl.repair(path) == len(json.dumps(big)) and jsonl.read(path) == [RECORDS[0]]
    assert jsonl.repair(tmp_path / "missing.jsonl") == 0 and jsonl.read(tmp_path / "x") == []


def test_a_damaged_line_in_the_middle_costs_only_itself(tmp_path, caplog):
    path = tmp_path / "rollouts.jsonl"
    write(path, RECORDS[:2])
    with path.open("ab") as f:
        f.write(b'{"i": 2, "te{"i": 3}\n')  # what the old writer left: a record glued on a tear
    write_more = "".join(json.dumps(r) + "\n" for r in RECORDS[4:])
    with path.open("a") as f:
        f.write(write_more)
    assert jsonl.read(path) == [*RECORDS[:2], RECORDS[4]]
    assert f"{path} line 3: skipped a line that is not JSON" in caplog.text


def _writer(path: str, n: int, k: int, start) -> None:
    start.wait()
    for i in range(k):  # a RunDir per record: each first append repairs, racing the others
        RunDir(Path(path).parent).append_jsonl(Path(path).name,
                                               {"writer": n, "i": i, "pad": "z" * (n * 60_000)})


def test_concurrent_processes_never_interleave_or_cut_records(tmp_path):
    path = tmp_path / "spent.jsonl"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_writer, args=(str(path), n, 40, start)) for n in range(1, 5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    records = jsonl.read(path)
    assert len(records) == 160 == len(path.read_text().splitlines())
    assert {(r["writer"], r["i"]) for r in records} == {(n, i) for n in range(1, 5) for i in range(40)}
