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

Each is reported on all pairs and on the sampled pairs alone. With `collect.add_gold` (the
default) the final component's gold answer is a candidate of every collection, so many of
its pairs are gold-vs-sample, and gold text is easy to tell (short, in the dataset's own
style). An update never scores the gold answer: it compares the component's own outputs
under different values, so the sampled pairs (neither side gold) are the ones that say
whether the reward model can guide it.

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
from optimas_cli.stats import sign_test_greater  # noqa: E402


def real_pairs(run_dirs: list[Path]) -> tuple[list, dict[str, str], RewardConfig, set[int]]:
    """Distinct preference pairs of every rollout record under `run_dirs`, the components'
    descriptions, the first run's reward config, and the indices of the pairs with the gold
    answer on one side (`collect.add_gold`: the final component's gold output is a candidate)."""
    from optimas_cli.methods.optimas.collect import pairs_from_record
    from optimas_cli.rewards.pairs import canonical

    cfg = yaml.safe_load((run_dirs[0] / "config.yaml").read_text())
    comps = cfg["system"]["components"]
    system = SimpleNamespace(cfg=SimpleNamespace(components={
        # no variables: the pairs name no writing model (this bench reads no trust control)
        n: SimpleNamespace(inputs=c["inputs"], variables={}) for n, c in comps.items()}))
    def key(p) -> str:
        return canonical([p.component, p.inputs, p.chosen, p.rejected])

    unique: dict[str, object] = {}
    gold_keys: set[str] = set()
    for d in run_dirs:
        for f in sorted(d.glob("rollouts/iter_*/*.jsonl")):
            for line in f.read_text().splitlines():
                record = json.loads(line)
                for p in pairs_from_record(record, system):
                    unique.setdefault(key(p), p)
                    if p.gold:  # the gold answer on one side
                        gold_keys.add(key(p))
    pairs = list(unique.values())
    used = sorted({p.component for p in pairs})
    return (pairs, {n: comps[n].get("description", "") for n in used}, RewardConfig(**cfg["reward"]),
            {i for i, k in enumerate(unique) if k in gold_keys})


def synthetic_pairs(n: int) -> tuple[list, dict[str, str], RewardConfig, set[int]]:
    from lrf_memory import hotpot_pairs

    reward = RewardConfig(**yaml.safe_load((ROOT / "configs" / "reward" / "minilm.yaml").read_text()))
    desc = "Answers the question from the retrieved context and the hints."
    pairs = hotpot_pairs(n)
    return pairs, {"answer_generator": desc}, reward, set(range(len(pairs)))  # gold chosen


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


def output_prior(pairs: list, k: int) -> list[bool]:
    """Per pair, whether the input-blind rule `output_prior` ranks it right when its fold is
    held out (the same folds as the fits)."""
    from optimas_cli.rewards import input_key

    right = [False] * len(pairs)
    for fold in folds_of(pairs, k):
        wins: dict[tuple[str, str], int] = defaultdict(int)
        for p in pairs:
            if input_key(p) not in fold:
                wins[p.component, output_text(p.chosen)] += 1
                wins[p.component, output_text(p.rejected)] -= 1
        for i, p in enumerate(pairs):
            if input_key(p) in fold:
                right[i] = (wins[p.component, output_text(p.chosen)]
                            > wins[p.component, output_text(p.rejected)])
    return right


def cross_validate(pairs: list, comps: dict[str, str], reward: RewardConfig, setting: str, k: int,
                   seed: int) -> tuple[list[bool], float]:
    """Per pair, whether a reward model fitted (one setting) on the other folds ranks it
    right (a tie is wrong, as in LocalRewardModel.evaluate); and the seconds the fits took."""
    from optimas_cli.rewards import InputSplit, LocalRewardModel, fit_reward_model, input_key
    from optimas_cli.rewards.model import TIE_TOL

    right = [False] * len(pairs)
    seconds = 0.0
    for fold in folds_of(pairs, k):
        train_keys = {input_key(p) for p in pairs} - fold
        model = LocalRewardModel(comps, backbone=reward.backbone, max_length=reward.max_length,
                                 seed=seed)
        model.split = InputSplit(heldout=set(fold), train=train_keys)
        heads = setting == "heads"
        t0 = time.perf_counter()
        # a backbone fit stops at reward.epochs (max_epochs = epochs: no epochs added until
        # the heads beat chance); every input has its side already, so reward.holdout is unused
        fit_reward_model(model, pairs, reward.model_copy(update={"max_epochs": reward.epochs}),
                         train_backbone=not heads, seed=seed)
        seconds += time.perf_counter() - t0
        held = [i for i, p in enumerate(pairs) if input_key(p) in fold]
        scores = model.score_items([(pairs[i].component, pairs[i].inputs, out) for i in held
                                    for out in (pairs[i].chosen, pairs[i].rejected)])
        for n, i in enumerate(held):
            right[i] = scores[2 * n] - scores[2 * n + 1] > TIE_TOL
    return right, seconds


def tally(pairs: list, right: list[bool], keep) -> dict[str, tuple[int, int]]:
    """(right, n) per component over the pairs whose index `keep` accepts."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, p in enumerate(pairs):
        if keep(i):
            out[p.component][0] += right[i]
            out[p.component][1] += 1
    return {c: (r, n) for c, (r, n) in out.items()}


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
    pairs, comps, reward, gold = (real_pairs(args.runs) if args.runs
                                  else synthetic_pairs(args.synthetic))
    if not pairs:
        sys.exit("no preference pairs under the given run directories")
    rows = []
    for setting in args.settings.split(","):
        seconds = 0.0
        if setting in ("backbone", "heads"):
            right, seconds = cross_validate(pairs, comps, reward, setting, args.folds, args.seed)
        elif setting == "output_prior":
            right = output_prior(pairs, args.folds)
        elif setting == "shorter_wins":
            right = [shorter_wins(p) for p in pairs]
        else:
            ap.error(f"--settings: unknown {setting!r} (backbone, heads, output_prior, shorter_wins)")
        every, sampled = tally(pairs, right, lambda i: True), tally(pairs, right, lambda i: i not in gold)
        for comp, (r, n) in sorted(every.items()):
            inputs = len({p.example_id for p in pairs if p.component == comp})
            # held out by input: with one input its fold trains on none of its pairs
            measured = inputs > 1 or setting == "shorter_wins"
            rs, ns = sampled.get(comp, (0, 0))
            rows.append({
                "component": comp, "setting": setting, "pairs": n, "inputs": inputs,
                "accuracy": r / n if measured else None,
                "p_value": sign_test_greater(r, n - r) if measured else None,
                "sampled_pairs": ns,  # neither side the gold answer: what an update compares
                "sampled_accuracy": rs / ns if measured and ns else None,
                "sampled_p_value": sign_test_greater(rs, ns - rs) if measured and ns else None,
                "fit_seconds": round(seconds, 1)})

    def cell(acc, p):
        return (f"{acc:.3f}", f"{p:.3g}") if acc is not None else ("n/a", "-")

    print("| component | setting | pairs | inputs | CV accuracy | p vs chance | sampled pairs "
          "| accuracy on them | p | fit s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: r["component"]):
        a, p = cell(r["accuracy"], r["p_value"])
        sa, sp = cell(r["sampled_accuracy"], r["sampled_p_value"])
        print(f"| {r['component']} | {r['setting']} | {r['pairs']} | {r['inputs']} | {a} | {p} | "
              f"{r['sampled_pairs']} | {sa} | {sp} | {r['fit_seconds']} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
