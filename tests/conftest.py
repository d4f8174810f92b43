"""Shared fixtures: a scripted LM for logic tests, paths, and an isolated LM cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lmfake import ScriptedLM  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HOTPOT = ROOT.parent / "shared" / "data" / "hotpotqa" / "hotpot_distractor_sample.jsonl"
HOTPOT_1K = HOTPOT.with_name("hotpot_dev_distractor_1k.jsonl")  # configs/hotpotqa.yaml reads it


@pytest.fixture
def scripted_lm():
    return ScriptedLM


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own LM cache dir, so no test sees another's cached answers."""
    d = tmp_path_factory.mktemp("lmcache")
    monkeypatch.setenv("OPTIMAS_CACHE_DIR", str(d))
    return d


@pytest.fixture
def hotpot_path():
    for path in (HOTPOT, HOTPOT_1K):
        if not path.exists():
            pytest.skip(f"HotpotQA data not found at {path}")
    return HOTPOT


@pytest.fixture
def write_yaml(tmp_path):
    """Write a YAML file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    return _write


@pytest.fixture
def seed_data():
    """Skip where the seed data (../shared/data) is absent: validate now reads a config's data,
    and with no mirror and no network a registered file can be neither found nor built."""
    from optimas_cli.data_files import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"seed data not found at {SHARED_DATA}")
