"""The same embedded model in process and behind a real OpenAI-compatible server
(llama-cpp-python's, started here on 127.0.0.1): a capital-city system scores the same in
chat form and in completion form, and a dead server's requests fail, recorded, rather
than being answered from the cache of the live one."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from llama_servers import free_port, llama_server

from optimas_cli.config import load
from optimas_cli.jobs import execute
from optimas_cli.layout import FAILURES
from optimas_cli.lm.cache import DB_NAME
from optimas_cli.metrics import exact_match

pytestmark = pytest.mark.slow

SMOL = "local/smollm2-135m-instruct"
CAPITALS = {"Kenya": "Nairobi", "Germany": "Berlin", "Spain": "Madrid", "Egypt": "Cairo",
            "Russia": "Moscow", "Greece": "Athens", "Peru": "Lima", "Canada": "Ottawa",
            "Portugal": "Lisbon", "Norway": "Oslo"}
SYSTEM_YAML = """
defaults:
  - lm: smollm2
  - optimizer: none
  - reward: minilm
  - _self_
name: capitals
system:
  name: capitals
  inputs: [country]
  final_output: capital
  loader: test_served_lm:load_capitals
  metric: test_served_lm:capital_metric
  components:
    capital:
      kind: llm
      description: Names the capital city of a country.
      inputs: [country]
      outputs: [capital]
      params: {max_tokens: 12}
      variables:
        prompt:
          type: prompt
          instruction: Name the capital city of the country. Answer with the city name only.
          demos: [{country: France, capital: Paris}, {country: Japan, capital: Tokyo},
                  {country: Italy, capital: Rome}]
data: {train_size: 0, val_size: 0, test_size: 10}
eval: {workers: 1}
"""
# Where the two runs may differ: the server evaluates prompts in batches of 512 tokens, the
# embedded engine in batches of 64, so a near-tie between two tokens may break the other way.
NOISE = 0.2  # two of the ten questions


def load_capitals(cfg):
    from optimas_cli.data import Dataset, Example

    rows = [json.loads(line) for line in Path(cfg.path).read_text().splitlines()]
    return Dataset(examples=[Example(id=r["country"], inputs={"country": r["country"]},
                                     target={"capital": r["capital"]}) for r in rows])


def capital_metric(example, fields) -> dict:
    return {"score": exact_match(fields.get("capital", ""), example.target["capital"])}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server of the embedded SmolLM2 GGUF: its /v1
    base URL; stopped when the module's tests are done."""
    with llama_server(tmp_path_factory.mktemp("server")) as s:
        yield s.base


@pytest.fixture
def capitals(tmp_path, monkeypatch):
    """evaluate(*overrides) -> (run directory, per-example scores) of the capital system."""
    data = tmp_path / "capitals.jsonl"
    data.write_text("".join(json.dumps({"country": c, "capital": v}) + "\n"
                            for c, v in CAPITALS.items()))
    config = tmp_path / "capitals.yaml"
    config.write_text(SYSTEM_YAML)
    monkeypatch.setenv("SERVED_LM_KEY", "sk-local")  # the openai client wants some key

    def evaluate(*overrides: str) -> tuple[Path, dict[str, float]]:
        composed = load(config, [f"run_root={tmp_path / 'runs'}", f"data.path={data}", *overrides])
        path, _ = execute("evaluate", composed, show_progress=False)
        preds = [json.loads(x) for x in (path / "predictions.jsonl").read_text().splitlines()]
        return path, {p["id"]: p["score"] for p in preds}

    return evaluate


def served(base: str, *overrides: str) -> list[str]:
    return ["lm.model=openai/smollm2", "lm.choices=[openai/smollm2]", f"lm.api_base={base}",
            "lm.api_key_env=SERVED_LM_KEY", "lm.max_retries=0", *overrides]


def mean(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores)


def sent(cache_dir: Path, model: str) -> list[dict]:
    """The requests of `model` in the LM cache, with their routes (LMRequest.canonical)."""
    with sqlite3.connect(cache_dir / "lm" / DB_NAME) as db:
        rows = db.execute("SELECT request FROM responses WHERE model=?", (model,)).fetchall()
    return [json.loads(r) for (r,) in rows]


def test_chat_form_scores_the_same_in_process_and_through_the_server(
        server, capitals, isolated_cache, capsys):
    _, local = capitals("lm.prompt_style=chat")  # forced: embedded models default to documents
    _, remote = capitals(*served(server))  # auto: an API model gets chat
    with capsys.disabled():
        print(f"\nchat form, SmolLM2 135M, 10 capitals: in process {mean(local):.2f}, "
              f"through llama_cpp.server {mean(remote):.2f}")
    assert abs(mean(local) - mean(remote)) <= NOISE
    assert mean(remote) >= 0.5  # a reply in chat turns, not a sentence: exact match works
    requests = sent(isolated_cache, "openai/smollm2")
    assert len(requests) == 10 and all(r["route"] == {"api_base": server, "endpoint": "chat"}
                                       for r in requests)
    roles = [m[0] for m in requests[0]["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]


def test_completion_form_scores_the_same_in_process_and_through_the_server(
        server, capitals, isolated_cache, capsys):
    _, local = capitals()  # auto: an embedded model gets the completion document
    _, remote = capitals(*served(server, "lm.prompt_style=completion"))
    with capsys.disabled():
        print(f"\ncompletion form, SmolLM2 135M, 10 capitals: in process {mean(local):.2f}, "
              f"through llama_cpp.server {mean(remote):.2f}")
    assert abs(mean(local) - mean(remote)) <= NOISE and mean(remote) >= 0.5
    requests = sent(isolated_cache, "openai/smollm2")
    assert len(requests) == 10 and all(
        r["route"]["endpoint"] == "text_completion" and r["prompt"].endswith("\nCapital:")
        for r in requests)


def test_a_dead_server_fails_recorded_not_answered_from_the_live_servers_cache(
        server, capitals, tmp_path):
    _, remote = capitals(*served(server))
    assert mean(remote) > 0  # the cache now holds the live server's answers
    run_dir = tmp_path / "dead"
    with contextlib.suppress(Exception):  # DONE, or FAILED where failing runs fail loudly
        capitals(*served(f"http://127.0.0.1:{free_port()}/v1"), f"run_dir={run_dir}")
    failed = [json.loads(x) for x in (run_dir / FAILURES).read_text().splitlines()]
    assert sorted(f["example_id"] for f in failed) == sorted(CAPITALS)
    assert all("Connection" in f["error"] for f in failed), failed[0]
