"""Feature blocks of the reward benchmark's candidates, computed once per task and cached.

    python bench/rewards/features.py hotpotqa.answer_generator --block qwen15 --block minilm

Blocks (each an array per candidate, in the order of `candidates(records)`):
  minilm   the embedded MiniLM's mean-pooled features of the reward text (rewards/text.py),
           the features today's heads are fit on (384)
  lexical  input-aware but model-free: log length, empty, share of the output's words found
           in the inputs, whether the output appears verbatim in the inputs
  qwen05, qwen15, smollm2
           an embedded LLM's judge log-odds, the output's mean and summed log-likelihood
           given the input, and its last-token and mean hidden states
           (optimas_cli/rewards/llm_features.py)

Cached as .npz under $OPTIMAS_REWARD_BENCH_CACHE (default ~/.cache/optimas/reward_bench),
with the seconds and peak RSS their computation took (of the last process, for a block
resumed from its .partial.npz, which an LLM block writes every 20 inputs). An LLM block's
scalars (judge, loglik, loglik_sum: a few KiB) are also kept in the repo, as
bench/rewards/data/<task>.<block>.scalars.npz: a machine without the cache still has the
zero-shot and scalar designs (hours of LLM passes), and recomputes only the hidden states
(`features.py TASK --block qwen15` when it wants the *_head designs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "rewards"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collect import DATA, load_tasks, read_records  # noqa: E402

LLM_BLOCKS = {"qwen15": "local/qwen2.5-coder-1.5b-instruct",
              "qwen05": "local/qwen2.5-coder-0.5b-instruct",
              "smollm2": "local/smollm2-135m-instruct"}
BLOCKS = ["minilm", "lexical", *LLM_BLOCKS]
SCALARS = ("judge", "loglik", "loglik_sum")  # what the repo keeps of an LLM block


def cache_dir() -> Path:
    d = Path(os.environ.get("OPTIMAS_REWARD_BENCH_CACHE",
                            Path.home() / ".cache" / "optimas" / "reward_bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def candidates(records: list[dict]) -> list[tuple[int, int]]:
    """(record index, candidate index) of every candidate, the order of every block."""
    return [(i, j) for i, r in enumerate(records) for j in range(len(r["candidates"]))]


def description(task: str) -> str:
    """The component's description, from the task's config as Hydra composes it."""
    from optimas_cli import config as config_mod

    spec = load_tasks()[task]
    composed = config_mod.load(ROOT / spec["config"], spec.get("overrides", []))
    return composed.run.system.components[spec["component"]].description


_WORD = re.compile(r"\w+", re.UNICODE)


def lexical(records: list[dict]) -> np.ndarray:
    rows = []
    for i, j in candidates(records):
        rec = records[i]
        text = " ".join(str(v) for v in rec["candidates"][j]["outputs"].values())
        source = " ".join(str(v) for v in rec["inputs"].values()).lower()
        words = _WORD.findall(text.lower())
        vocab = set(_WORD.findall(source))
        found = sum(w in vocab for w in words) / len(words) if words else 0.0
        rows.append([np.log1p(len(text)), float(not text.strip()), found,
                     float(bool(text.strip()) and text.strip().lower() in source)])
    return np.asarray(rows, dtype=np.float32)


def minilm(records: list[dict], desc: str) -> np.ndarray:
    from optimas_cli.rewards import LocalRewardModel

    comp = records[0]["component"]
    model = LocalRewardModel({comp: desc})
    seqs = [model.encode(comp, records[i]["inputs"], records[i]["candidates"][j]["outputs"])
            for i, j in candidates(records)]
    return model.features(seqs).numpy().astype(np.float32)


def llm(records: list[dict], desc: str, model: str, partial: Path) -> dict[str, np.ndarray]:
    """The LLM block, saved to `partial` every 20 inputs: a killed pass resumes there."""
    from optimas_cli.rewards.llm_features import LlamaFeaturizer

    keys = ["judge", "loglik", "loglik_sum", "last", "mean"]
    cols: dict[str, list] = {k: [] for k in keys}
    done = 0
    if partial.exists():
        with np.load(partial) as z:
            done = int(z["inputs_done"])
            cols = {k: list(z[k]) for k in keys}
    feat = LlamaFeaturizer(model, n_threads=int(os.environ.get("OPTIMAS_BENCH_THREADS", "2")))
    t0 = time.time()
    for n, rec in enumerate(records[done:], done + 1):
        for f in feat.features(desc, rec["inputs"], [c["outputs"] for c in rec["candidates"]]):
            for k in keys:
                cols[k].append(getattr(f, k))
        if n % 20 == 0 or n == len(records):
            np.savez(partial, inputs_done=n, **{k: np.asarray(v, dtype=np.float32)
                                                 for k, v in cols.items()})
            print(f"  {model}: {n}/{len(records)} inputs "
                  f"({(time.time() - t0) / (n - done):.1f} s each)", flush=True)
    return {k: np.asarray(v, dtype=np.float32) for k, v in cols.items()}


def block_path(task: str, block: str) -> Path:
    return cache_dir() / f"{task}.{block}.npz"


def kept_path(task: str, block: str) -> Path:
    return DATA / f"{task}.{block}.scalars.npz"


def keep_scalars(task: str, block: str) -> None:
    """Write an LLM block's scalars into the repo's data folder (once)."""
    if block in LLM_BLOCKS and not kept_path(task, block).exists():
        arrays, meta = load(task, block)
        np.savez_compressed(kept_path(task, block), meta=json.dumps(meta),
                            **{k: arrays[k] for k in SCALARS})


def compute(task: str, block: str) -> Path:
    path = block_path(task, block)
    if path.exists():
        keep_scalars(task, block)
        return path
    records = read_records(task)
    desc = description(task)
    t0 = time.time()
    if block == "minilm":
        arrays = {"x": minilm(records, desc)}
    elif block == "lexical":
        arrays = {"x": lexical(records)}
    else:
        partial = path.with_suffix(".partial.npz")
        arrays = llm(records, desc, LLM_BLOCKS[block], partial)
        partial.unlink(missing_ok=True)
    meta = {"seconds": time.time() - t0, "inputs": len(records),
            "candidates": len(candidates(records)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    np.savez(path, meta=json.dumps(meta), **arrays)
    keep_scalars(task, block)
    print(f"{task} {block}: {meta['seconds']:.0f} s, peak RSS {meta['peak_rss_mb']:.0f} MB", flush=True)
    return path


def load(task: str, block: str) -> tuple[dict[str, np.ndarray], dict]:
    """A block's arrays and meta: the cache's, else (an LLM block) the scalars the repo
    keeps; FileNotFoundError when neither is there."""
    path = block_path(task, block)
    if not path.exists() and kept_path(task, block).exists():
        path = kept_path(task, block)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    return arrays, meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tasks", nargs="+")
    ap.add_argument("--block", action="append", choices=BLOCKS, required=True)
    args = ap.parse_args()
    for task in args.tasks:
        for block in args.block:
            compute(task, block)


if __name__ == "__main__":
    main()
