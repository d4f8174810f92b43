"""Can the local reward model learn a bench's preference pairs? Cross-validated accuracy.

    python bench/lrf_alignment.py runs/bench/pubmedqa_ladder/optimas*/seed_*     # real pairs
    python bench/lrf_alignment.py --synthetic 60    # control: gold vs wrong HotpotQA answers

A run's own held-out figures rest on 1-8 pairs, too few to tell an LRF at chance from one
that learned something. This pools every rollout record of the given run directories
(rollouts/iter_*/COMPONENT*.jsonl; the same pair collected by several runs counts once),
splits the inputs (example ids) into --folds folds, and for each fold fits a fresh reward
model on the other folds' pairs, the way a run does, then scores the fold's pairs. Each
pair is held out exactly once, so the pooled accuracy over all pairs is an honest
estimate with a one-sided binomial p-value against chance (a tie counts as wrong).

Settings (the reward config of the first run directory, configs/reward/minilm.yaml):
  backbone  the loop's first fit: backbone and heads, `epochs` epochs at `lr`/`head_lr`
  heads     heads only on frozen MiniLM features: `adapt_epochs` at `adapt_head_lr`
Beside them, two rules that never look at the input, scored the same way (a tie is wrong):
  output_prior  an output (its text, case and spacing ignored) scores its wins minus losses
                on the training folds' pairs, whatever the input; the higher one wins. On a
                yes/no answer this is the label prior: an LRF no better than it has learned
                which answer is usually right, not which is right for this question.
  shorter_wins  the shorter output wins (no training).

--synthetic N builds N HotpotQA questions' answer_generator pairs (the gold answer chosen
over two other questions' answers; bench/lrf_memory.py's pairs): a task the LRF can learn,
so a failure on the real pairs is the pairs', not the training code's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from optimas_cli.schema import RewardConfig  # noqa: E402


def real_pairs(run_dirs: list[Path]) -> tuple[list, dict[str, str], RewardConfig]:
    """Distinct preference pairs of every rollout record under `run_dirs`, the components'
    descriptions, and the first run's reward config."""
    from optimas_cli.rewards.pairs import canonical
    from optimas_cli.stages.collect import pairs_from_record

    cfg = yaml.safe_load((run_dirs[0] / "config.yaml").read_text())
    comps = cfg["system"]["components"]
    system = SimpleNamespace(cfg=SimpleNamespace(components={
        n: SimpleNamespace(inputs=c["inputs"]) for n, c in comps.items()}))
    unique: dict[str, object] = {}
    for d in run_dirs:
        for f in sorted(d.glob("rollouts/iter_*/*.jsonl")):
            for line in f.read_text().splitlines():
                record = json.loads(line)
                for p in pairs_from_record(record, system):
                    key = canonical([p.component, p.inputs, p.chosen, p.rejected])
                    unique.setdefault(key, p)
    pairs = list(unique.values())
    used = sorted({p.component for p in pairs})
    return pairs, {n: comps[n].get("description", "") for n in used}, RewardConfig(**cfg["reward"])


def synthetic_pairs(n: int) -> tuple[list, dict[str, str], RewardConfig]:
    from lrf_memory import hotpot_pairs

    reward = RewardConfig(**yaml.safe_load((ROOT / "configs" / "reward" / "minilm.yaml").read_text()))
    desc = "Answers the question from the retrieved context and the hints."
    return hotpot_pairs(n), {"answer_generator": desc}, reward


def folds_of(pairs: list, k: int) -> list[set[str]]:
    """The inputs (example ids) dealt into k folds by a hash: fixed across settings."""
    from optimas_cli.rewards.pairs import input_key

    keys = sorted({input_key(p) for p in pairs}, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    return [set(keys[i::k]) for i in range(k)]


def shorter_wins(pair) -> bool:
    """Whether "the shorter output wins" picks the chosen output (a tie is wrong)."""
    a, b = (len(json.dumps(x, sort_keys=True)) for x in (pair.chosen, pair.rejected))
    return a < b


def output_text(outputs: dict) -> str:
    return " ".join(json.dumps(outputs, sort_keys=True).lower().split())


def output_prior(pairs: list, k: int) -> dict[str, dict]:
    """The input-blind rule `output_prior`, cross-validated over the same folds as the fits."""
    from optimas_cli.rewards import input_key

    right: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for fold in folds_of(pairs, k):
        wins: dict[tuple[str, str], int] = defaultdict(int)
        for p in pairs:
            if input_key(p) not in fold:
                wins[p.component, output_text(p.chosen)] += 1
                wins[p.component, output_text(p.rejected)] -= 1
        for p in pairs:
            if input_key(p) in fold:
                total[p.component] += 1
                right[p.component] += (wins[p.component, output_text(p.chosen)]
                                       > wins[p.component, output_text(p.rejected)])
    return {c: {"right": right[c], "n": total[c], "seconds": 0.0} for c in sorted(total)}


def cross_validate(pairs: list, comps: dict[str, str], reward: RewardConfig, setting: str, k: int,
                   seed: int) -> dict[str, dict]:
    """Pooled held-out accuracy per component over k folds of one setting."""
    from optimas_cli.rewards import InputSplit, LocalRewardModel, fit_reward_model, input_key

    right: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    seconds = 0.0
    for fold in folds_of(pairs, k):
        train_keys = {input_key(p) for p in pairs} - fold
        model = LocalRewardModel(comps, backbone=reward.backbone, max_length=reward.max_length,
                                 seed=seed)
        model.split = InputSplit(heldout=set(fold), train=train_keys)
        heads = setting == "heads"
        t0 = time.perf_counter()
        result = fit_reward_model(
            model, pairs, epochs=reward.adapt_epochs if heads else reward.epochs,
            max_epochs=None, lr=reward.lr, head_lr=reward.adapt_head_lr if heads else reward.head_lr,
            batch_size=reward.batch_size, weight_by_gap=reward.weight_by_gap,
            gap_floor=reward.gap_floor, train_backbone=not heads, seed=seed,
            gradient_checkpointing=reward.gradient_checkpointing)
        seconds += time.perf_counter() - t0
        for comp, m in result["heldout"].items():
            right[comp] += round(m["pairwise_accuracy"] * m["n_pairs"])
            total[comp] += m["n_pairs"]
    return {c: {"right": right[c], "n": total[c], "seconds": seconds} for c in sorted(total)}


def binom_p(right: int, n: int) -> float:
    """One-sided P(X >= right) for X ~ Binomial(n, 1/2)."""
    from math import comb

    return sum(comb(n, j) for j in range(right, n + 1)) / 2**n if n else 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run directories holding rollouts/")
    ap.add_argument("--synthetic", type=int, default=0, help="HotpotQA questions of the control")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--settings", default="backbone,heads,output_prior,shorter_wins",
                    help="reward-model fits (backbone, heads) and input-blind rules to score")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    if bool(args.runs) == bool(args.synthetic):
        ap.error("give run directories or --synthetic N, not both")
    missing = [str(d) for d in args.runs if not (d / "config.yaml").is_file()]
    if missing:
        ap.error(f"not a run directory (no config.yaml): {', '.join(missing)}")
    pairs, comps, reward = real_pairs(args.runs) if args.runs else synthetic_pairs(args.synthetic)
    if not pairs:
        sys.exit("no preference pairs under the given run directories")
    rows = []
    for setting in args.settings.split(","):
        if setting in ("backbone", "heads"):
            got = cross_validate(pairs, comps, reward, setting, args.folds, args.seed)
        elif setting == "output_prior":
            got = output_prior(pairs, args.folds)
        elif setting == "shorter_wins":
            got = {c: {"right": sum(shorter_wins(p) for p in pairs if p.component == c),
                       "n": sum(p.component == c for p in pairs), "seconds": 0.0} for c in comps}
        else:
            ap.error(f"--settings: unknown {setting!r} (backbone, heads, output_prior, shorter_wins)")
        for comp, r in got.items():
            inputs = len({p.example_id for p in pairs if p.component == comp})
            # held out by input: with one input its fold trains on none of its pairs
            measured = r["n"] and (inputs > 1 or setting == "shorter_wins")
            rows.append({
                "component": comp, "setting": setting, "pairs": r["n"], "inputs": inputs,
                "accuracy": r["right"] / r["n"] if measured else None,
                "p_value": binom_p(r["right"], r["n"]) if measured else None,
                "fit_seconds": round(r["seconds"], 1)})
    print("| component | setting | pairs | inputs | CV accuracy | p vs chance | fit s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: r["component"]):
        acc, p = ((f"{r['accuracy']:.3f}", f"{r['p_value']:.3g}") if r["accuracy"] is not None
                  else ("n/a (one input)", "-"))
        print(f"| {r['component']} | {r['setting']} | {r['pairs']} | {r['inputs']} | {acc} | {p} | "
              f"{r['fit_seconds']} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
