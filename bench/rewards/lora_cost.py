"""What the paper's reward design costs here: an embedded LLM with LoRA and a scalar head,
trained with the Bradley-Terry loss (design (d) of issue #28), timed on real pairs.

    python bench/rewards/lora_cost.py hotpotqa.answer_generator --model local/smollm2-135m-instruct

Loads the dequantized GGUF in transformers (as `weights` variables do,
`optimas_cli.lm.local.load_hf_model`), wraps it in a LocalRewardModel with LoRA adapters
(peft) and one head, trains one epoch on `--pairs` pairs of the task's first inputs, and
prints the seconds per pair and the peak RSS, and what one epoch over the task's pairs
(the benchmark's 5 folds x 4/5 of them) would take at that rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "rewards"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collect import read_records  # noqa: E402
from features import description  # noqa: E402


def pairs_of(records):
    from optimas_cli.rewards import PreferencePair

    out = []
    for rec in records:
        cands = rec["candidates"]
        for a in cands:
            for b in cands:
                if a["score"] > b["score"]:
                    out.append(PreferencePair(
                        component=rec["component"], inputs=rec["inputs"], chosen=a["outputs"],
                        rejected=b["outputs"], score_chosen=a["score"], score_rejected=b["score"],
                        example_id=rec["example_id"], gold="gold" in (a["source"], b["source"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("task")
    ap.add_argument("--model", default="local/smollm2-135m-instruct")
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=384)
    args = ap.parse_args()
    import torch

    from optimas_cli.lm.local import gguf_path, load_hf_model
    from optimas_cli.lm.model_files import models_dir
    from optimas_cli.rewards import LocalRewardModel, fit_reward_model
    from optimas_cli.schema import RewardConfig

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    records = read_records(args.task)
    pairs = pairs_of(records)
    load_hf_model(args.model)  # converts the GGUF once (cached under the models directory)
    path = gguf_path(args.model)
    hf_dir = models_dir() / "hf" / f"{path.stem}-{path.stat().st_size}"
    comp = records[0]["component"]
    lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    model = LocalRewardModel({comp: description(args.task)}, backbone=str(hf_dir),
                             max_length=args.max_length, lora=lora)
    cfg = RewardConfig(epochs=1, max_epochs=1, holdout=0.0, batch_size=8)
    t0 = time.perf_counter()
    fit_reward_model(model, pairs[:args.pairs], cfg, train_backbone=True)
    secs = time.perf_counter() - t0
    per_pair = secs / args.pairs
    epoch = per_pair * len(pairs) * 4 / 5 * 5  # every fold's training pairs, one epoch each
    out = {"model": args.model, "max_length": args.max_length, "pairs_timed": args.pairs,
           "seconds_per_pair": per_pair, "task_pairs": len(pairs),
           "cv_epoch_hours": epoch / 3600, "one_fit_epoch_minutes": per_pair * len(pairs) * 0.8 / 60,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
