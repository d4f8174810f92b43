"""Secrets: with API keys in the environment, whole runs on the API path (litellm mock
responses, no network) leave the keys in no file of the run directory, the LM cache or the
logs, also when a provider error message echoes the key back."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest
from reliability_log import record
from typer.testing import CliRunner

from optimas_cli.cli import app
from optimas_cli.config import scrub, secret_values
from optimas_cli.lm import api as lm_api

runner = CliRunner()
WORDS = ["apple", "river", "stone", "cloud", "green", "tiger", "lemon", "piano"]
FAILING = WORDS[::2]

CONFIG = """defaults:
  - lm: smollm2
  - optimizer: none
  - reward: minilm
  - _self_
name: secrets
system:
  name: secrets
  inputs: [word]
  final_output: out
  loader: test_secrets:load_words
  metric: test_secrets:word_metric
  components:
    upper:
      kind: llm
      description: Writes the word in capital letters.
      inputs: [word]
      outputs: [caps]
      params: {max_tokens: 8}
      variables:
        prompt: {type: prompt, instruction: Repeat the word in capitals.}
        model: {type: model, value: "${lm.model}", choices: "${lm.choices}"}
    exclaim:
      kind: llm
      description: Adds an exclamation mark.
      inputs: [caps]
      outputs: [out]
      params: {max_tokens: 8}
data: {train_size: 2, val_size: 3, test_size: 3}
eval: {workers: 2}
"""


def load_words(cfg):
    from optimas_cli.data import Dataset, Example

    return Dataset(examples=[Example(id=w, inputs={"word": w}, target={"out": w.upper() + "!"})
                             for w in WORDS])


def word_metric(example, fields) -> dict:
    return {"score": float(str(fields["out"]).strip() == example.target["out"])}


@pytest.fixture
def keys(monkeypatch):
    """Fresh random keys: the provider's variable, and one named by lm.api_key_env."""
    out = {"OPENAI_API_KEY": f"sk-test-{secrets.token_hex(16)}",
           "MY_GATEWAY_TOKEN": f"gw-test-{secrets.token_hex(16)}"}
    for name, value in out.items():
        monkeypatch.setenv(name, value)
    return out


class ProviderError(Exception):
    """An error as a provider words it, quoting the key; its repr (what litellm's request
    log prints of mock_response) does not, as a real request's kwargs would not hold it."""

    def __repr__(self) -> str:
        return "ProviderError(...)"


@pytest.fixture
def mocked_api(monkeypatch, keys):
    """Every litellm call gets a mock_response: the word in capitals (with '!' for the second
    step); requests about every other word fail like a provider that quotes the key."""
    calls = []
    real = lm_api.ApiEngine._kwargs

    def kwargs(self, request, attempt):
        kw = real(self, request, attempt)
        calls.append(kw)
        prompt = json.dumps(kw["messages"])
        word = next((w for w in WORDS if w in prompt or w.upper() in prompt), "none")
        if word in FAILING:
            key = kw.get("api_key") or keys["OPENAI_API_KEY"]
            kw["mock_response"] = ProviderError(f"401 invalid key {key} for https://api.example"
                                                f"/v1?key={key}")
        else:
            kw["mock_response"] = word.upper() + ("!" if "exclamation" in prompt else "")
        return kw

    monkeypatch.setattr(lm_api.ApiEngine, "_kwargs", kwargs)
    return calls


def leaks(roots: list[Path], texts: list[str], keys: dict[str, str]) -> list[str]:
    """Where any key (or its distinctive hex part) appears: files under roots, and texts."""
    needles = [n for k in keys.values() for n in (k, k.split("-")[-1])]
    found = []
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                data = p.read_bytes()
                found += [f"{p}: {n[:12]}..." for n in needles if n.encode() in data]
    found += [f"output {i}: {t[max(0, t.find(n) - 300):t.find(n) + 40]!r}" for i, t in enumerate(texts)
              for n in needles if n in t]
    return found


@pytest.mark.parametrize("command,extra", [
    ("run", ["optimizer=search", "optimizer.budget_system_runs=12"]),
    ("evaluate", ["lm.api_key_env=MY_GATEWAY_TOKEN", "eval.repeats=2"]),
])
def test_no_key_in_run_directory_cache_or_logs(command, extra, keys, mocked_api, tmp_path,
                                                isolated_cache, caplog, write_yaml):
    cfg = write_yaml("secrets.yaml", CONFIG)
    caplog.set_level(logging.INFO)
    result = runner.invoke(app, [command, str(cfg), "lm=openai", f"run_root={tmp_path / 'runs'}",
                                 "lm.max_retries=0", "-q", *extra,
                                 # most examples fail on purpose (the echo is a 5xx)
                                 "eval.max_failed_share=1"])
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "runs" / "secrets").iterdir())
    # it really ran on the API path, with the key, and the provider's echo was recorded
    assert mocked_api and all(c["model"].startswith("openai/") for c in mocked_api)
    if "lm.api_key_env=MY_GATEWAY_TOKEN" in extra:
        assert all(c["api_key"] == keys["MY_GATEWAY_TOKEN"] for c in mocked_api)
    assert (run_dir / "DONE").exists() and (run_dir / "run.log").exists()
    assert list(Path(isolated_cache).rglob("*.sqlite3"))  # answers were cached
    failures = [json.loads(line) for line in (run_dir / "failures.jsonl").read_text().splitlines()]
    assert failures and all(f["example_id"] in FAILING for f in failures)
    assert all("invalid key [redacted]" in f["error"] for f in failures)
    assert leaks([run_dir, Path(isolated_cache)], [result.output, caplog.text], keys) == []
    record("secrets", command=command, api_calls=len(mocked_api), leaks=0,
           files=sum(p.is_file() for root in (run_dir, Path(isolated_cache))
                     for p in root.rglob("*")))


def test_secret_values_come_from_secret_named_variables_only(monkeypatch):
    monkeypatch.setenv("SOME_API_KEY", "abcdefgh12345678")
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to be told from ordinary text
    monkeypatch.setenv("PLAIN_SETTING", "abcdefgh87654321")
    values = secret_values()
    assert "abcdefgh12345678" in values and "abc" not in values
    assert "abcdefgh87654321" not in values
    assert scrub("key=abcdefgh12345678!") == "key=[redacted]!"
    assert scrub("nothing secret") == "nothing secret"


@pytest.mark.parametrize("error", ["crash", "disk full"])
def test_a_failed_runs_marker_holds_no_key(monkeypatch, tmp_path, error):
    """FAILED quotes the error (its traceback, or the disk-full line): never a key in it."""
    import errno

    from optimas_cli.run_dir import RunDir

    key = "sk-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    rd = RunDir(tmp_path)
    with pytest.raises(OSError):
        with rd.guard():
            if error == "crash":
                raise OSError(f"the provider said: bad key {key}")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / key))
    failed = (tmp_path / "FAILED").read_text()
    assert key not in failed and "[redacted]" in failed
