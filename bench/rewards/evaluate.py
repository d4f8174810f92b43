"""Which reward design knows which of a component's outputs is better? Cross-validated.

    python bench/rewards/evaluate.py hotpotqa.answer_generator [--designs a,b] [--out F.json]

Inputs are split into 5 folds (seeded); every design is fit on four folds' inputs and
judged on the fifth's, so each input is held out once. Judged on the *sampled* candidates
only (the component's own outputs; the gold answer is never a side of a judged pair,
though training may use it, as the loop does):
  accuracy   pairwise accuracy over pairs of sampled candidates whose global scores differ;
             a tie in reward counts half (so any input-blind guess is 0.5 in expectation);
             95% interval by a bootstrap over inputs (pairs of one input move together)
  spearman   rank correlation of reward and score within an input, averaged over inputs
             with >= 3 candidates and differing scores
  selection  per input, the global score of the candidate the reward ranks first (a tie:
             the mean of the tied), beside a random pick (the mean), the oracle (the best)
             and the configured output ("current"); `recovered` = (pick - random) /
             (oracle - random), with its bootstrap interval; `static`: the one source
             (a model, the configured output) best on the other folds, fixed for every
             input, and the pick minus it per input, with its interval
  vs controls  the paired accuracy difference to each input-blind control, with its interval
  curve      accuracy when fit on 8, 16, 32, 64, 128 or all training inputs (per fold), for
             the three most accurate heads and today's (minilm_head)

The designs and controls are in designs.py. Input-blind controls: `output_prior` (an
output text's wins minus losses in training pairs, whatever the input), `shorter_wins`,
`model_identity` (a Bradley-Terry strength per writing model, fit on the training pairs). A design beats the controls on a component when the lower
end of every paired interval is above 0.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "rewards"))

from collect import data_path, load_tasks, read_records  # noqa: E402
from designs import CONTROLS, HeadDesign, designs  # noqa: E402
from features import candidates  # noqa: E402

from optimas_cli.rewards.trust import output_text  # noqa: E402

FOLDS = 5
CURVE = [8, 16, 32, 64, 128]
CURVED = 3  # learning curves for this many of the most accurate heads (and minilm_head)
BOOT = 2000


# ----------------------------------------------------------------------------- data


class Task:
    """The candidates of a task, flattened, with what the metrics need."""

    def __init__(self, name: str, records: list[dict] | None = None) -> None:
        self.name = name
        self.records = records if records is not None else read_records(name)
        idx = candidates(self.records)
        self.rec = np.array([i for i, _ in idx])
        self.score = np.array([self.records[i]["candidates"][j]["score"] for i, j in idx])
        cands = [self.records[i]["candidates"][j] for i, j in idx]
        self.gold = np.array([c["source"] == "gold" for c in cands])
        self.current = np.array(["current" in [c["source"], *c.get("also", [])] for c in cands])
        # a component without a model variable records no writer: its configured model
        self.model = [c.get("model") or ("gold" if c["source"] == "gold" else "configured")
                      for c in cands]
        self.sources = [{c["source"], *c.get("also", [])} for c in cands]
        # the controls read an output as the loop's trust check does (rewards/trust.py)
        self.text = [output_text(c["outputs"]) for c in cands]
        self.length = np.array([len(t) for t in self.text])
        self.by_rec: dict[int, np.ndarray] = defaultdict(list)
        for k, r in enumerate(self.rec):
            self.by_rec[int(r)].append(k)
        self.by_rec = {r: np.array(v) for r, v in self.by_rec.items()}

    def pairs(self, recs, sampled_only: bool) -> np.ndarray:
        """(better, worse) candidate indices of the given inputs, scores strictly apart."""
        out = []
        for r in recs:
            ks = [k for k in self.by_rec[r] if not (sampled_only and self.gold[k])]
            for a in ks:
                for b in ks:
                    if self.score[a] > self.score[b]:
                        out.append((a, b))
        return np.array(out, dtype=int).reshape(-1, 2)


# ----------------------------------------------------------------------------- metrics


def folds_of(task: Task, seed: int = 0) -> list[list[int]]:
    recs = sorted(task.by_rec)
    random.Random(seed).shuffle(recs)
    return [recs[i::FOLDS] for i in range(FOLDS)]


def cross_validate(task: Task, scorer, n_train: int | None = None, seed: int = 0):
    """Held-out rewards of every candidate (each input scored by the fold that held it out)
    and the seconds the fits took."""
    r = np.zeros(len(task.score))
    rng = random.Random(seed)
    t0 = time.perf_counter()
    folds = folds_of(task, seed)
    for f, held in enumerate(folds):
        train = [x for g, fold in enumerate(folds) if g != f for x in fold]
        if n_train is not None:
            train = rng.sample(train, min(n_train, len(train)))
        s = scorer.scores(task, train, rng)
        for rec in held:
            r[task.by_rec[rec]] = s[task.by_rec[rec]]
    return r, time.perf_counter() - t0


def per_input(task: Task, r: np.ndarray) -> dict[str, np.ndarray]:
    """Per-input tallies over sampled candidates: correct (ties half) and pairs; the picked,
    random, oracle and current scores (nan where the input has < 2 sampled candidates)."""
    recs = sorted(task.by_rec)
    out = {k: np.full(len(recs), np.nan) for k in ["correct", "pairs", "pick", "random",
                                                     "oracle", "current", "spearman"]}
    for n, rec in enumerate(recs):
        ks = np.array([k for k in task.by_rec[rec] if not task.gold[k]])
        p = task.pairs([rec], True)
        out["pairs"][n] = len(p)
        if len(p):
            d = r[p[:, 0]] - r[p[:, 1]]
            out["correct"][n] = float(np.sum(np.where(np.abs(d) <= 1e-9, 0.5, d > 0)))
        else:
            out["correct"][n] = 0.0
        if len(ks) < 2:
            continue
        s = task.score[ks]
        top = r[ks] >= r[ks].max() - 1e-9
        out["pick"][n] = s[top].mean()
        out["random"][n] = s.mean()
        out["oracle"][n] = s.max()
        cur = [k for k in ks if task.current[k]]
        out["current"][n] = task.score[cur[0]] if cur else np.nan
        if len(ks) >= 3 and np.ptp(s) > 0 and np.ptp(r[ks]) > 0:
            from scipy.stats import spearmanr

            out["spearman"][n] = spearmanr(r[ks], s).statistic
    return out


def best_static(task: Task) -> np.ndarray:
    """Per input (sorted), the score of the one source (the configured output, a ladder
    model, a sample) that scored best on the other folds' inputs: what fixing the best
    choice for every input gets, without a reward (nan where that source gave nothing)."""
    recs = sorted(task.by_rec)
    out = np.full(len(recs), np.nan)

    def score_of(rec, src):
        ks = [k for k in task.by_rec[rec] if src in task.sources[k] and not task.gold[k]]
        return task.score[ks[0]] if ks else np.nan

    folds = folds_of(task)
    for f, held in enumerate(folds):
        train = [x for g, fold in enumerate(folds) if g != f for x in fold]
        names = {s for r in train for k in task.by_rec[r] if not task.gold[k]
                 for s in task.sources[k]}
        best = max(sorted(names), key=lambda s: np.nanmean([score_of(r, s) for r in train]))
        for rec in held:
            out[recs.index(rec)] = score_of(rec, best)
    return out


def _boot(stat, n: int, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = [stat(rng.integers(0, n, n)) for _ in range(BOOT)]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def summarize(pi: dict[str, np.ndarray], static: np.ndarray | None = None) -> dict[str, object]:
    c, n = pi["correct"], pi["pairs"]
    acc = float(c.sum() / n.sum()) if n.sum() else float("nan")
    sel = ~np.isnan(pi["pick"])
    pick, rnd, orc = pi["pick"][sel], pi["random"][sel], pi["oracle"][sel]

    def recovered(ix):
        gap = orc[ix].mean() - rnd[ix].mean()
        return (pick[ix].mean() - rnd[ix].mean()) / gap if gap > 0 else float("nan")

    cur = pi["current"][sel]
    out = {} if static is None else {"static": float(np.nanmean(static[sel])), **_vs_static(
        pi["pick"][sel], static[sel])}
    return out | {
        "accuracy": acc, "accuracy_ci": _boot(lambda ix: c[ix].sum() / max(n[ix].sum(), 1), len(c)),
        "pairs": int(n.sum()), "inputs_with_pairs": int((n > 0).sum()),
        "spearman": float(np.nanmean(pi["spearman"])) if np.any(~np.isnan(pi["spearman"])) else None,
        "pick": float(pick.mean()), "random": float(rnd.mean()), "oracle": float(orc.mean()),
        "current": float(np.nanmean(cur)) if np.any(~np.isnan(cur)) else None,
        "recovered": float(recovered(np.arange(len(pick)))),
        "recovered_ci": _boot(recovered, len(pick)),
    }


def _vs_static(pick: np.ndarray, static: np.ndarray) -> dict[str, object]:
    """The reward's per-input pick minus the best static choice, per input, with its CI."""
    ok = ~np.isnan(static)
    d = pick[ok] - static[ok]
    return {"pick_minus_static": float(d.mean()),
            "pick_minus_static_ci": _boot(lambda ix: d[ix].mean(), len(d))}


def paired_vs(pi_a, pi_b) -> dict[str, object]:
    """Accuracy of a minus accuracy of b on the same pairs, with a bootstrap interval."""
    ca, cb, n = pi_a["correct"], pi_b["correct"], pi_a["pairs"]

    def stat(ix):
        return (ca[ix].sum() - cb[ix].sum()) / max(n[ix].sum(), 1)

    return {"diff": float(stat(np.arange(len(n)))), "ci": _boot(stat, len(n))}


def evaluate_task(name: str, only: list[str] | None, curve: bool) -> dict[str, object]:
    task = Task(name)
    scorers = {**{k: v() for k, v in CONTROLS.items()}, **designs(task)}
    if only:
        scorers = {k: v for k, v in scorers.items() if k in only or k in CONTROLS}
    res: dict[str, object] = {"task": name, "inputs": len(task.records), "designs": {}}
    held: dict[str, dict] = {}
    static = best_static(task)
    for k, scorer in scorers.items():
        r, secs = cross_validate(task, scorer)
        held[k] = per_input(task, r)
        res["designs"][k] = {**summarize(held[k], static), "fit_seconds_per_fold": secs / FOLDS,
                             "control": k in CONTROLS}
        print(f"{name} {k}: acc {res['designs'][k]['accuracy']:.3f} "
              f"recovered {res['designs'][k]['recovered']:.2f} ({secs:.1f} s)", flush=True)
    heads = sorted((k for k in scorers if isinstance(scorers[k], HeadDesign)),
                   key=lambda k: -res["designs"][k]["accuracy"])
    curved = set(heads[:CURVED]) | ({"minilm_head"} & set(heads))  # the best, and today's
    for k in scorers:
        if k in CONTROLS:
            continue
        d = res["designs"][k]
        d["vs"] = {c: paired_vs(held[k], held[c]) for c in CONTROLS}
        d["beats_controls"] = all(v["ci"][0] > 0 for v in d["vs"].values())
        if curve and k in curved:
            d["curve"] = {}
            for n in [*CURVE, None]:
                r, _ = cross_validate(task, scorers[k], n_train=n)
                d["curve"]["all" if n is None else str(n)] = summarize(per_input(task, r))["accuracy"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tasks", nargs="*")
    ap.add_argument("--available", action="store_true",
                    help="every task of tasks.yaml whose data is collected")
    ap.add_argument("--designs", default="", help="comma-separated design names (controls always)")
    ap.add_argument("--curve", action="store_true", help="also the learning curves")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    only = [d for d in args.designs.split(",") if d] or None
    tasks = list(args.tasks)
    if args.available:
        tasks += [t for t in load_tasks() if data_path(t).exists() and t not in tasks]
    if not tasks:
        ap.error("no task given and none collected (bench/rewards/data/)")
    results = [evaluate_task(t, only, args.curve) for t in tasks]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
