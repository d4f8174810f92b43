"""The embedded model ladder: split-package assembly (fast, fake parts) and the Qwen models (slow)."""

from __future__ import annotations

import hashlib
import importlib
import sys
import tomllib
from pathlib import Path

import pytest

from optimas_cli.lm import LMClient, LMError, LMRequest
from optimas_cli.lm.local import LOCAL_MODELS
from optimas_cli.lm.model_files import QWEN25_CODER_05B, QWEN25_CODER_15B, SplitGGUF

ROOT = Path(__file__).resolve().parents[2]
QWEN05, QWEN15 = "local/qwen2.5-coder-0.5b-instruct", "local/qwen2.5-coder-1.5b-instruct"
PARTS = [b"GGUF-part-one|", b"part-two|", b"three"]


@pytest.fixture
def fake_split(tmp_path, monkeypatch):
    """make(sha256, present=all) -> SplitGGUF over fake packages fakeqwenpart<i> under tmp_path."""
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))

    def make(sha256: str, present: tuple[int, ...] = (1, 2, 3)) -> SplitGGUF:
        for i in present:
            pkg = site / f"fakeqwenpart{i}"
            (pkg / "data").mkdir(parents=True)
            (pkg / "__init__.py").write_text("")
            (pkg / "data" / f"part{i:02d}.bin").write_bytes(PARTS[i - 1])
        importlib.invalidate_caches()
        return SplitGGUF("fake.gguf", "fakeqwenpart", 3, "1.0", sum(map(len, PARTS)), sha256)

    yield make
    for i in (1, 2, 3):
        sys.modules.pop(f"fakeqwenpart{i}", None)


def test_good_sha_assembles_parts_in_order(fake_split, tmp_path):
    split = fake_split(hashlib.sha256(b"".join(PARTS)).hexdigest())
    out = split.path(tmp_path / "models")
    assert out == tmp_path / "models" / "fake.gguf" and out.read_bytes() == b"".join(PARTS)
    assert split.path(tmp_path / "models") == out  # second call: the file is reused


def test_bad_sha_is_lm_error_and_leaves_no_file(fake_split, tmp_path):
    split = fake_split("0" * 64)
    with pytest.raises(LMError, match="do not assemble to the expected file"):
        split.path(tmp_path / "models")
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["fake.gguf.lock"]


def test_missing_part_is_lm_error_naming_the_package(fake_split, tmp_path):
    split = fake_split("0" * 64, present=(1, 3))
    with pytest.raises(LMError, match=r"not installed: fakeqwenpart2==1\.0: pip install"):
        split.path(tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_ladder_registered_and_parts_pinned_in_pyproject():
    assert {QWEN05.removeprefix("local/"), QWEN15.removeprefix("local/")} <= set(LOCAL_MODELS)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for split in (QWEN25_CODER_05B, QWEN25_CODER_15B):
        assert set(split.requirements()) <= set(deps)


@pytest.mark.slow
@pytest.mark.parametrize("model", [QWEN05, QWEN15])
def test_qwen_greedy_completion(make_cfg, model):
    lm = LMClient(make_cfg("off"))
    r = lm.complete(LMRequest(model=model, prompt="Q: What is the capital of France?\nA:",
                              max_tokens=8))
    assert r.text.strip() and r.completion_tokens > 0
    # greedy: the same request gives the same text
    again = lm.complete(LMRequest(model=model, prompt="Q: What is the capital of France?\nA:",
                                  max_tokens=8))
    assert again.text == r.text
