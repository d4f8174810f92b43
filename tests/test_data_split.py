"""Seeded splits, and a test split drawn only from an official test file when a loader marks one."""

from __future__ import annotations

import pytest

from optimas_cli.data import Dataset, Example, split
from optimas_cli.schema import DataConfig


def examples(prefix, n, **meta):
    return [Example(id=f"{prefix}{i}", inputs={"q": i}, target={}, meta=dict(meta)) for i in range(n)]


def test_one_file_gives_disjoint_seeded_splits():
    data = Dataset(examples("x", 30))
    cfg = DataConfig(train_size=10, val_size=5, test_size=8, seed=3)
    a, b = split(data, cfg), split(data, cfg)
    assert a == b and [len(a[k]) for k in ("train", "val", "test")] == [10, 5, 8]
    ids = [e.id for k in a for e in a[k]]
    assert len(set(ids)) == len(ids) == 23


def test_marked_test_examples_feed_only_the_test_split():
    data = Dataset(examples("train", 20) + examples("test", 12, split="test"))
    s = split(data, DataConfig(train_size=10, val_size=10, test_size=12))
    assert all(e.id.startswith("test") for e in s["test"]) and len(s["test"]) == 12
    assert all(e.id.startswith("train") for k in ("train", "val") for e in s[k])
    with pytest.raises(ValueError, match="test file has only 12"):
        split(data, DataConfig(train_size=1, val_size=1, test_size=13))
    with pytest.raises(ValueError, match="train_size\\+val_size = 21"):
        split(data, DataConfig(train_size=11, val_size=10, test_size=1))


def test_pubmedqa_tests_on_the_official_test_file_and_trains_on_the_train_file():
    from systems.pubmedqa import data

    try:
        ds = data.load(DataConfig(train_size=40, val_size=40, test_size=100))
    except FileNotFoundError as e:
        pytest.skip(str(e))
    s = split(ds, DataConfig(train_size=40, val_size=40, test_size=100))
    test_ids = {e.id for e in data.read_examples(data.resolve_data_path(None, data.TEST_PATH, ""))}
    assert len(s["test"]) == 100 and {e.id for e in s["test"]} <= test_ids
    assert not {e.id for k in ("train", "val") for e in s[k]} & test_ids
