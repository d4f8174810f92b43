"""LM faults inside whole runs, injected through litellm's mock responses (no network) and a
local model file llama.cpp cannot load. Each run either completes with retries, records the
examples as failed (failures.jsonl), or stops cleanly with STOPPED in a run directory that
`resume=` finishes with nothing already computed lost."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest
import yaml
from reliability_log import record
from typer.testing import CliRunner

from optimas_cli.cli import app
from optimas_cli.lm import api as lm_api
from optimas_cli.lm import local as lm_local
from optimas_cli.lm.api import litellm_module

runner = CliRunner()
WORDS = ["apple", "river", "stone", "cloud", "green", "tiger", "lemon", "piano", "chair",
         "mango", "ocean", "zebra"]
FAULTY = set(WORDS[::2])
MINI = "openai/gpt-4o-mini"

CONFIG = """defaults:
  - lm: openai
  - optimizer: none
  - reward: minilm
  - _self_
name: faults
system:
  name: faults
  inputs: [word]
  final_output: out
  loader: test_lm_faults:load_words
  metric: test_lm_faults:word_metric
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
        max_tokens: {type: hyperparameter, value: 8, choices: [8, 16]}
    exclaim:
      kind: llm
      description: Adds an exclamation mark.
      inputs: [caps]
      outputs: [out]
      params: {max_tokens: 8}
data: {train_size: 2, val_size: 4, test_size: 6}
eval: {workers: 2}
lm: {retry_base_delay_s: 0.0, max_retries: 2}
"""


def load_words(cfg):
    from optimas_cli.data import Dataset, Example

    return Dataset(examples=[Example(id=w, inputs={"word": w}, target={"out": w.upper() + "!"})
                             for w in WORDS])


def word_metric(example, fields) -> dict:
    return {"score": float(str(fields["out"]).strip() == example.target["out"])}


class Provider:
    """Answers every litellm call with a mock response: `upper` writes the word in capitals
    (gpt-4o-mini in lower case for every other word, so model choices differ), `exclaim`
    adds '!' to its input. `fault(word, attempt, kw)` may replace the mock of an `upper` call:
    a mock_response value, a dict of litellm kwargs, or None for the healthy answer. Counts
    real answers and faults."""

    def __init__(self, fault=None):
        self.fault = fault
        self.revoked_after: int | None = None  # every call after this many answers: a 401
        self.ok = 0
        self.faults = 0
        self.attempts: dict[str, int] = {}  # `upper` calls per word
        self.lock = threading.Lock()

    def kwargs(self, kw: dict, attempt: int) -> dict:
        with self.lock:  # the check and the count together: exactly `revoked_after` answers
            if self.revoked_after is not None and self.ok >= self.revoked_after:
                kw["mock_response"] = _litellm_error("AuthenticationError",
                                                     "Incorrect API key provided")
                return kw
            self.ok += 1
        prompt = kw["messages"][-1]["content"]  # a completion document: "...Word: apple\nCaps:"
        if "Word: " not in prompt:  # exclaim's: "...Caps: APPLE\nOut:"
            kw["mock_response"] = prompt.split("Caps: ")[-1].split("\n")[0] + "!"
        else:
            word = prompt.split("Word: ")[-1].split("\n")[0]
            with self.lock:
                self.attempts[word] = self.attempts.get(word, 0) + 1
            mock = self.fault(word, attempt, kw) if self.fault else None
            if mock is not None:
                with self.lock:
                    self.faults += 1
                    self.ok -= 1  # not an answer
                kw.update(mock if isinstance(mock, dict) else {"mock_response": mock})
                return kw
            low = kw["model"] == MINI and WORDS.index(word) % 2 == 1
            kw["mock_response"] = word if low else word.upper()
        return kw


@pytest.fixture
def provider(monkeypatch):
    """Installs a Provider (`provider.fault = ...` to inject) into every ApiEngine."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-faults")
    p = Provider()
    real = lm_api.ApiEngine._kwargs
    monkeypatch.setattr(lm_api.ApiEngine, "_kwargs",
                        lambda self, request, attempt: p.kwargs(real(self, request, attempt), attempt))
    return p


@pytest.fixture
def faults_cfg(write_yaml):
    return write_yaml("faults.yaml", CONFIG)


def invoke(*args: str):
    return runner.invoke(app, [*map(str, args), "-q"])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def the_run(root: Path) -> Path:
    (path,) = (root / "faults").iterdir()
    return path


# ------------------------------------------------------------------ faults of one call

def _litellm_error(name: str, message: str):
    litellm = litellm_module()
    return getattr(litellm, name)(message=message, llm_provider="openai", model="gpt-4o-mini")


def _reply(content, finish_reason="stop"):
    return {"mock_response": {"choices": [{"index": 0, "finish_reason": finish_reason,
                                           "message": {"role": "assistant", "content": content}}]}}


FAULTS = {
    # kind: (fault(word, attempt, kw) for faulty words, outcome, error in failures.jsonl)
    "429 rate limit, then an answer": (
        lambda w, a, kw: "litellm.RateLimitError" if a < 2 else None, "retried", None),
    "timeout, then an answer": (
        lambda w, a, kw: kw.update(timeout=0.01) or {"mock_timeout": True, "mock_response": "x"}
        if a < 1 else None, "retried", None),
    "500, then an answer": (
        lambda w, a, kw: "litellm.InternalServerError" if a < 2 else None, "retried", None),
    "500 on every attempt": (
        lambda w, a, kw: "litellm.InternalServerError", "failed", "gave up after 3 attempts"),
    "503 on every attempt": (
        lambda w, a, kw: _litellm_error("ServiceUnavailableError", "overloaded"), "failed",
        "gave up after 3 attempts: ServiceUnavailableError"),
    "empty reply": (lambda w, a, kw: "", "failed", "empty reply (finish_reason=stop)"),
    "malformed reply (no content)": (
        lambda w, a, kw: _reply(None), "failed", "malformed response"),
    "content filter (finish_reason)": (
        lambda w, a, kw: _reply("", "content_filter"), "failed",
        "refused by the provider's content filter"),
    "content policy violation": (
        lambda w, a, kw: _litellm_error("ContentPolicyViolationError", "flagged as unsafe"),
        "failed", "ContentPolicyViolationError"),
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_call_faults_are_retried_or_recorded_as_failed_examples(kind, provider, faults_cfg,
                                                                tmp_path):
    fault, outcome, error = FAULTS[kind]
    provider.fault = lambda w, a, kw: fault(w, a, kw) if w in FAULTY else None
    result = invoke("evaluate", faults_cfg, f"run_root={tmp_path}", "lm.model=openai/gpt-4o")
    assert result.exit_code == 0, result.output
    path = the_run(tmp_path)
    assert (path / "DONE").exists()
    preds = {p["id"]: p for p in read_jsonl(path / "predictions.jsonl")}
    faulty = {w for w in preds if w in FAULTY}
    assert len(preds) == 6 and faulty and faulty != set(preds)  # both kinds in the test split
    failures = read_jsonl(path / "failures.jsonl")
    metrics = json.loads((path / "metrics.json").read_text())
    if outcome == "retried":
        assert failures == [] and metrics["failed"] == 0 and metrics["mean"] == 1.0
        assert all(provider.attempts[w] > 1 for w in faulty)  # each answered after a retry
        assert all(provider.attempts[w] == 1 for w in set(preds) - faulty)
    else:
        assert {f["example_id"] for f in failures} == faulty == {w for w, p in preds.items()
                                                                 if p["error"]}
        assert all(f["component"] == "upper" and error in f["error"] for f in failures), failures
        assert metrics["failed"] == len(faulty) and metrics["mean"] == pytest.approx(
            1 - len(faulty) / 6)
        retries = 3 if "every attempt" in kind else 1  # max_retries=2; permanent faults: 1 call
        assert all(provider.attempts[w] == retries for w in faulty)
        assert f"{len(faulty)} failure(s) in {len(faulty)} of 6" in (path / "run.log").read_text()
    record("lm_fault", kind=kind, outcome=outcome, run="DONE", examples=len(preds),
           faulty=len(faulty), failed=len(failures), lost=0)


# ------------------------------------------------------------------ a key revoked mid-run

STABLE = ("seconds", "system_runs", "lm_calls", "lm_tokens", "lm_requests")


def comparable(history: list[dict]) -> list[dict]:
    """History without what a stop and a resume may change: timings and physical spend."""
    return [{k: v for k, v in h.items() if k not in STABLE} for h in history]


def test_key_revoked_mid_run_stops_cleanly_and_resumes_losing_nothing(provider, faults_cfg,
                                                                      tmp_path):
    search = [faults_cfg, "optimizer=search", "optimizer.budget_system_runs=100"]
    # the reference: never interrupted, its own cache
    ref = invoke("run", *search, f"run_root={tmp_path / 'ref'}", f"lm.cache.dir={tmp_path / 'c1'}")
    assert ref.exit_code == 0, ref.output
    ref_path, ref_calls = the_run(tmp_path / "ref"), provider.ok
    # the key is revoked after 12 answers: in the middle of the search
    provider.ok, provider.revoked_after = 0, 12
    stopped = invoke("run", *search, f"run_root={tmp_path / 'run'}",
                     f"lm.cache.dir={tmp_path / 'c2'}")
    path = the_run(tmp_path / "run")
    assert stopped.exit_code == 3, stopped.output
    assert (path / "STOPPED").exists() and not (path / "FAILED").exists()
    assert "rejected the API key" in (path / "STOPPED").read_text()
    assert "AuthenticationError" in (path / "STOPPED").read_text()
    assert not (path / "failures.jsonl").exists()  # a stop, not failed examples
    assert f"resume={path}" in stopped.output.replace("\n", "")
    answered_before, history_before = provider.ok, read_jsonl(path / "history.jsonl")
    assert answered_before == 12 and 1 <= len(history_before) < len(
        read_jsonl(ref_path / "history.jsonl"))
    # a new key: the run goes on from its directory
    provider.ok, provider.revoked_after = 0, None
    resumed = invoke("run", *search, f"resume={path}", f"lm.cache.dir={tmp_path / 'c2'}")
    assert resumed.exit_code == 0, resumed.output
    assert (path / "DONE").exists() and not (path / "STOPPED").exists()
    # nothing computed was lost: no answer asked for twice, history before the stop kept
    assert answered_before + provider.ok == ref_calls
    history = read_jsonl(path / "history.jsonl")
    assert history[:len(history_before)] == history_before
    assert comparable(history) == comparable(read_jsonl(ref_path / "history.jsonl"))
    summary, ref_summary = (json.loads((p / "summary.json").read_text()) for p in (path, ref_path))
    assert summary["test"] == ref_summary["test"]
    assert (path / "final/system.yaml").read_text() == (ref_path / "final/system.yaml").read_text()
    assert yaml.safe_load((path / "final/system.yaml").read_text())["state"]["upper"]["model"] == \
        "openai/gpt-4o"  # the search found the model that writes every word in capitals
    record("lm_fault", kind="key revoked mid-run (401 after 12 answers)", outcome="stopped",
           run="STOPPED, resumed to DONE", resumed_identical=True,
           answers_before_stop=answered_before, answers_after_resume=provider.ok,
           reference_answers=ref_calls, lost=0)


# ------------------------------------------------------------------ a local model that won't load

def test_local_model_that_fails_to_load_fails_its_examples_and_the_run_goes_on(
        provider, faults_cfg, tmp_path, monkeypatch):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(range(256)) * 16)  # a GGUF header, then garbage
    spec = lm_local.LOCAL_MODELS["gemma3-270m"]
    monkeypatch.setitem(lm_local.LOCAL_MODELS, "gemma3-270m",
                        lm_local.LocalModel(lambda: broken, spec.description, spec.chat_template))
    monkeypatch.setattr(lm_local, "_POOLS", {})  # no pool loaded from the real file
    result = invoke("run", faults_cfg, "optimizer=search", "optimizer.budget_system_runs=100",
                    f"run_root={tmp_path}", f"lm.choices=[{MINI},local/gemma3-270m]")
    assert result.exit_code == 0, result.output
    path = the_run(tmp_path)
    assert (path / "DONE").exists()
    tried = [h for h in read_jsonl(path / "history.jsonl") if h.get("kind") == "iteration"]
    on_gemma = [h for h in tried
                if h["candidate"].get("upper", {}).get("model") == "local/gemma3-270m"]
    assert len(on_gemma) == 2  # max_tokens 8 and 16
    # every validation example of a trial on the broken model failed, recorded with the file
    failures = read_jsonl(path / "failures.jsonl")
    assert {f["label"] for f in failures} == {f"val search {h['iteration']}" for h in on_gemma}
    assert len(failures) == 2 * 4 and all(f["component"] == "upper" for f in failures)
    assert all(f"local model file {broken} failed to load: ValueError" in f["error"]
               for f in failures), failures[0]
    assert all(h["val"]["failed"] == 4 and not h["accepted"] for h in on_gemma)
    final = yaml.safe_load((path / "final/system.yaml").read_text())["state"]["upper"]
    assert final["model"] == MINI
    record("lm_fault", kind="local model fails to load (corrupt GGUF)", outcome="failed",
           run="DONE", examples=4 * len(tried), faulty=4 * len(on_gemma), failed=len(failures),
           lost=0)


# ------------------------------------------------------------------ a cache file damaged

def test_a_damaged_cache_stops_the_run_and_it_resumes_once_moved_aside(provider, faults_cfg,
                                                                        tmp_path):
    """A cache page a request needs is damaged: the run stops with STOPPED naming the file and
    how to rebuild it (on the old code every example failed on it, recorded as failures that
    name no file)."""
    cache = tmp_path / "cache"
    common = [faults_cfg, "lm.model=openai/gpt-4o", f"lm.cache.dir={cache}"]
    ref = invoke("evaluate", *common, f"run_root={tmp_path / 'ref'}")
    assert ref.exit_code == 0, ref.output
    ref_path, ref_calls = the_run(tmp_path / "ref"), provider.ok
    db = cache / "responses.sqlite3"
    conn = sqlite3.connect(db)  # the entries into the main file (the run's connections stay open)
    assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    conn.close()
    data = bytearray(db.read_bytes())  # every page after the first: the file opens, lookups fail
    assert len(data) > 2 * 4096
    data[4096:] = bytes((i * 131 + 7) % 256 for i in range(len(data) - 4096))
    db.write_bytes(bytes(data))
    provider.ok = 0
    stopped = invoke("evaluate", *common, f"run_root={tmp_path / 'run'}")
    path = the_run(tmp_path / "run")
    assert stopped.exit_code == 3, stopped.output
    assert (path / "STOPPED").exists() and not (path / "FAILED").exists()
    why = (path / "STOPPED").read_text()
    assert f"LM cache {db} is unreadable" in why and "malformed" in why and f"mv {db}" in why
    assert not (path / "failures.jsonl").exists()  # a stop, not failed examples
    assert provider.ok == 0  # nothing was asked or served past the broken file
    db.rename(db.with_name(db.name + ".broken"))  # as the message says
    resumed = invoke("evaluate", *common, f"resume={path}")
    assert resumed.exit_code == 0, resumed.output
    assert (path / "DONE").exists() and not (path / "STOPPED").exists()
    assert provider.ok == ref_calls
    preds, ref_preds = (sorted(read_jsonl(p / "predictions.jsonl"), key=lambda r: r["id"])
                        for p in (path, ref_path))
    assert [(p["id"], p["prediction"], p["score"]) for p in preds] == \
        [(p["id"], p["prediction"], p["score"]) for p in ref_preds]
    record("lm_fault", kind="LM cache file damaged (malformed pages)", outcome="stopped",
           run="STOPPED, moved aside and resumed to DONE", resumed_identical=True,
           answers_before_stop=0, answers_after_resume=provider.ok, reference_answers=ref_calls,
           lost=0)
