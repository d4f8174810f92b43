"""The built-in loaders (optimas_cli.loaders): JSONL, CSV and `datasets` saved to disk,
mapped by data.inputs / data.target / data.id, on real files written in tmp_path; errors
name the file, the row and the column."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimas_cli import loaders
from optimas_cli.cli import app
from optimas_cli.schema import DataConfig

ROWS = [{"qid": "a", "q": "France", "answer": "Paris"},
        {"qid": "b", "q": "Kenya", "answer": "Nairobi"},
        {"qid": "c", "q": "Peru", "answer": "Lima"}]


def cfg(path: Path, **keys) -> DataConfig:
    return DataConfig(path=str(path), **{"inputs": {"country": "q"}, **keys})


def write_jsonl(path: Path, rows: list[dict], blank_after: int | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8-sig")  # with a BOM, as spreadsheets write it
    return path


def triples(dataset) -> list[tuple]:
    return [(e.id, e.inputs, e.target, e.meta) for e in dataset.examples]


def test_jsonl_maps_columns_to_inputs_target_and_id(tmp_path):
    path = write_jsonl(tmp_path / "caps.jsonl", ROWS, blank_after=1)
    got = loaders.jsonl(cfg(path, target="answer", id="qid"))
    assert triples(got) == [(r["qid"], {"country": r["q"]}, {"answer": r["answer"]}, {})
                            for r in ROWS]
    # no data.id: the line number (the blank line 2 is skipped); a target mapping renames
    got = loaders.jsonl(cfg(path, target={"capital": "answer"}))
    assert [e.id for e in got.examples] == ["1", "3", "4"]
    assert got.examples[1].target == {"capital": "Nairobi"}
    assert loaders.jsonl(cfg(path)).examples[0].target == {}  # no target: an empty one


def test_csv_keeps_values_as_strings_and_numbers_rows_by_line(tmp_path):
    path = write_csv(tmp_path / "caps.csv", "q,answer,pop\nFrance,Paris,68\nKenya,Nairobi,55\n")
    got = loaders.csv(cfg(path, target="answer", inputs={"country": "q", "people": "pop"}))
    assert triples(got) == [("2", {"country": "France", "people": "68"}, {"answer": "Paris"}, {}),
                            ("3", {"country": "Kenya", "people": "55"}, {"answer": "Nairobi"}, {})]


def test_hf_disk_reads_a_dataset_and_a_dataset_dicts_test_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "one"))
    got = loaders.hf_disk(cfg(tmp_path / "one", target="answer", id="qid"))
    assert triples(got) == [(r["qid"], {"country": r["q"]}, {"answer": r["answer"]}, {})
                            for r in ROWS]
    datasets.DatasetDict({"train": ds.select([0, 1]), "test": ds.select([2])}).save_to_disk(
        str(tmp_path / "dict"))
    got = loaders.hf_disk(cfg(tmp_path / "dict", target="answer"))
    assert triples(got) == [("train-1", {"country": "France"}, {"answer": "Paris"}, {}),
                            ("train-2", {"country": "Kenya"}, {"answer": "Nairobi"}, {}),
                            ("test-1", {"country": "Peru"}, {"answer": "Lima"}, {"split": "test"})]


def test_a_missing_column_names_the_file_the_row_and_the_column(tmp_path):
    rows = [ROWS[0], ROWS[1], {"qid": "c", "question": "Peru", "answer": "Lima"}]
    path = write_jsonl(tmp_path / "caps.jsonl", rows)
    with pytest.raises(ValueError) as e:
        loaders.jsonl(cfg(path, target="answer"))
    assert str(e.value) == (f"{path} line 3: no column 'q' (data.inputs.country); the row has "
                            "['answer', 'qid', 'question']")
    path = write_csv(tmp_path / "caps.csv", "q,answer\nFrance,Paris\nKenya\n")  # a short row
    with pytest.raises(ValueError, match=rf"^{path} line 3: no column 'answer' \(data.target\)"):
        loaders.csv(cfg(path, target="answer"))
    with pytest.raises(ValueError, match=r"line 2: no column 'ans' \(data.target.capital\)"):
        loaders.csv(cfg(path, target={"capital": "ans"}))
    with pytest.raises(ValueError, match=r"line 1: no column 'id' \(data.id\)"):
        loaders.jsonl(cfg(tmp_path / "caps.jsonl", id="id"))


def test_hf_disk_missing_column_names_the_row(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "one"))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'one'} row 1: no column 'gold' "
                                         r"\(data.target\)"):
        loaders.hf_disk(cfg(tmp_path / "one", target="gold"))
    (tmp_path / "not_a_dataset").mkdir()
    with pytest.raises(ValueError, match="not a dataset written by datasets' save_to_disk"):
        loaders.hf_disk(cfg(tmp_path / "not_a_dataset"))


@pytest.mark.parametrize("text, message", [
    ('{"q": "France"}\n{"q": "Kenya"\n', r"line 2: not valid JSON"),
    ('{"q": "France"}\n["Kenya"]\n', r"line 2: a JSON object per line, not a list"),
    ("\n\n", r"no rows"),
])
def test_a_bad_jsonl_file_names_the_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"^{path}.*{message}"):
        loaders.jsonl(cfg(path))


def test_what_the_mapping_needs_is_named(tmp_path):
    path = write_jsonl(tmp_path / "caps.jsonl", [*ROWS, ROWS[0]])
    with pytest.raises(ValueError, match=r"^the jsonl loader \(optimas_cli.loaders.jsonl\) needs "
                                         r"data.inputs: system input -> column"):
        loaders.jsonl(DataConfig(path=str(path)))
    with pytest.raises(ValueError, match=r"the csv loader \(optimas_cli.loaders.csv\) needs "
                                         r"data.path"):
        loaders.csv(DataConfig(inputs={"country": "q"}))
    with pytest.raises(FileNotFoundError, match="data file not found"):
        loaders.jsonl(cfg(tmp_path / "nowhere.jsonl"))
    with pytest.raises(ValueError, match=rf"^{path} line 4: id 'a' \(data.id column 'qid'\) is "
                                         rf"not unique: {path} line 1 has it too"):
        loaders.jsonl(cfg(path, id="qid"))


CONFIG = """defaults:
  - lm: smollm2
  - optimizer: none
  - reward: minilm
  - _self_
name: capitals
system:
  name: capitals
  inputs: [country]
  final_output: capital
  loader: optimas_cli.loaders.jsonl
  metric: capfns:exact
  components:
    lookup:
      kind: python
      description: Looks the capital up.
      inputs: [country]
      outputs: [capital]
      params: {function: "capfns:lookup"}
data: {path: caps.jsonl, inputs: {country: q}, target: answer, id: qid,
       train_size: 0, val_size: 0, test_size: 3}
"""

USER_CODE = '''
CAPITALS = {"France": "Paris", "Kenya": "Nairobi"}


def lookup(country):
    return CAPITALS.get(country, "?")


def exact(example, fields):
    return {"score": float(fields["capital"] == example.target["answer"])}
'''


def test_a_users_jsonl_system_evaluates_through_the_built_in_loader(tmp_path, monkeypatch):
    (tmp_path / "capfns.py").write_text(USER_CODE)
    (tmp_path / "capitals.yaml").write_text(CONFIG)
    write_jsonl(tmp_path / "caps.jsonl", ROWS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "capfns", raising=False)
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", str(tmp_path / "capitals.yaml"), f"run_root={tmp_path / 'runs'}", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs" / "capitals").iterdir()
    preds = {p["id"]: p for p in map(json.loads, (run / "predictions.jsonl").read_text()
                                     .splitlines())}
    assert {i: p["score"] for i, p in preds.items()} == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert preds["c"]["prediction"] == "?" and preds["c"]["target"] == {"answer": "Lima"}
    # a mapping to a column the file lacks: one line naming the file, the row and the column
    result = CliRunner().invoke(app, [*args, "data.inputs.country=country"])
    assert result.exit_code == 2
    assert (f"error: data: {tmp_path / 'caps.jsonl'} line 1: no column 'country' "
            "(data.inputs.country); the row has ['answer', 'q', 'qid']") in \
        " ".join(result.output.split())


# ---------------------------------------------------------------- the systems' own loaders

GOOD = {
    "hotpotqa": {"question": "q", "answer": "a", "context": [["T", ["s."]]]},
    "pubmedqa": {"question": "q", "context": "c", "groundtruth": "yes"},
    "bigcodebench": {"task_id": "t", "instruct_prompt": "i", "code_prompt": "c", "entry_point": "f",
                     "canonical_solution": "s", "test": "t", "libs": "[]"},
}


@pytest.mark.parametrize("system", ["hotpotqa", "pubmedqa", "bigcodebench"])
def test_the_systems_loaders_number_lines_as_editors_do(tmp_path, system):
    """Line 3 is the third line of the file (blank lines count), never a 0-based record; a
    JSON list, whose objects have no line, names the record, from 1."""
    import importlib

    load = importlib.import_module(f"systems.{system}.data").load
    good = GOOD[system]
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match=rf"^{path} line 3 lacks \["):
        load(DataConfig(path=str(path)))
    path.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(ValueError, match=rf"^{path} line 2: not valid JSON"):
        load(DataConfig(path=str(path)))
    listed = tmp_path / "bad.json"
    listed.write_text(json.dumps([good, {"question": "q"}], indent=1))
    with pytest.raises(ValueError, match=rf"^{listed} record 2 lacks \["):
        load(DataConfig(path=str(listed)))
    listed.write_text(json.dumps([good, "a string"]))
    with pytest.raises(ValueError, match=rf"^{listed} record 2: a JSON object, not a str"):
        load(DataConfig(path=str(listed)))
