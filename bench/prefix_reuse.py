"""Prefix reuse in the embedded engine: prompt tokens evaluated and wall time, on and off.

    python bench/prefix_reuse.py --cache runs/bench/pubmedqa_ladder/lmcache/lm/responses.sqlite3 \
        --model local/qwen2.5-coder-0.5b-instruct --requests 120

Replays the first N requests that one model answered in a recorded LM cache (a real run's
prompts, in the order the run sent them) through fresh engine pools as a run would
(`lm.local` defaults: two instances, one thread each, two callers), once with
`lm.local.prefix_reuse` off and once on, alternating for `--rounds` rounds. Reports the
prompt tokens the engine evaluated, the wall time, and whether every reply is the same
with reuse on and off (it must be: optimas_cli/lm/prefix.py).

    python bench/prefix_reuse.py --cache CACHE --share-only

runs no model: for every model in the cache, the share of prompt text (characters) that a
call shares with the longer common prefix of the last two prompts of its model, in the
order the run sent them (two instances; an upper bound on what reuse can keep).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_requests(cache: Path, model: str, n: int) -> list:
    from optimas_cli.lm.base import LMRequest

    db = sqlite3.connect(f"file:{cache}?mode=ro", uri=True)
    rows = db.execute("SELECT request FROM responses WHERE model = ? ORDER BY created LIMIT ?",
                      (model, n)).fetchall()
    out = []
    for (text,) in rows:
        r = json.loads(text)
        if r.get("messages"):
            r["messages"] = tuple(tuple(m) for m in r["messages"])
        r["stop"] = tuple(r.get("stop") or ())
        out.append(LMRequest(**r))
    return out


def shareable(cache: Path) -> dict[str, float]:
    """Per model: the share of prompt characters a call shares with one of the two previous
    prompts of its model (see the module doc)."""
    import os

    db = sqlite3.connect(f"file:{cache}?mode=ro", uri=True)
    recent: dict[str, list[str]] = {}
    totals: dict[str, list[int]] = {}
    for model, text in db.execute("SELECT model, request FROM responses ORDER BY created"):
        r = json.loads(text)
        prompt = "\n".join(m[1] for m in r["messages"]) if r.get("messages") else r["prompt"]
        last = recent.setdefault(model, [])
        kept = max((len(os.path.commonprefix([prompt, p])) for p in last), default=0)
        total = totals.setdefault(model, [0, 0])
        total[0] += len(prompt)
        total[1] += kept
        last[:] = (last + [prompt])[-2:]
    return {m: kept / chars for m, (chars, kept) in totals.items() if chars}


def replay(requests: list, reuse: bool, workers: int) -> dict:
    from optimas_cli.lm.config import LocalEngineConfig
    from optimas_cli.lm.local import LlamaPool, available_cores, gguf_path, local_model

    cfg = LocalEngineConfig(prefix_reuse=reuse)
    model = requests[0].model
    pool = LlamaPool(gguf_path(model), cfg.n_ctx, max(1, available_cores() // cfg.instances),
                     cfg.instances, local_model(model).chat_template,
                     n_batch=cfg.n_batch, prefix_reuse=reuse)
    evaluated = [0]
    load = pool._load

    def counted_load():
        llm = load()
        original = llm.eval

        def count(tokens):
            evaluated[0] += len(tokens)
            return original(tokens)

        llm.eval = count
        return llm

    pool._load = counted_load
    with pool.instance(), pool.instance():
        pass  # load both instances before the clock starts
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        replies = list(ex.map(pool.generate, requests))
    wall = time.perf_counter() - t0
    prompt = sum(r.prompt_tokens for r in replies)
    completion = sum(r.completion_tokens for r in replies)
    return {"reuse": reuse, "wall_s": wall, "prompt_tokens": prompt,
            "evaluated": evaluated[0] - completion, "texts": [r.text for r in replies]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--model", default=None, help="required unless --share-only")
    ap.add_argument("--share-only", action="store_true")
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.share_only:
        for model, share in shareable(args.cache).items():
            print(f"{model}: {share:.1%} of prompt text shared with a recent prompt")
        return 0
    if not args.model:
        ap.error("--model is required unless --share-only")
    requests = load_requests(args.cache, args.model, args.requests)
    if not requests:
        sys.exit(f"no requests of {args.model} in {args.cache}")
    runs = [replay(requests, reuse, args.workers)
            for _ in range(args.rounds) for reuse in (False, True)]
    same = all(r["texts"] == runs[0]["texts"] for r in runs)
    print(f"{len(requests)} requests of {args.model} from {args.cache}; "
          f"replies identical with reuse on and off: {same}\n")
    print("| prefix reuse | round | prompt tokens | evaluated | wall s |")
    print("|---|---:|---:|---:|---:|")
    for i, r in enumerate(runs):
        print(f"| {'on' if r['reuse'] else 'off'} | {i // 2 + 1} | {r['prompt_tokens']} "
              f"| {r['evaluated']} | {r['wall_s']:.1f} |")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
