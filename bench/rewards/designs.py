"""The reward designs and the input-blind controls that bench/rewards/evaluate.py compares.

A scorer has `scores(task, train_recs, rng)`: a reward per candidate of `task` (an
evaluate.Task), fit on the inputs `train_recs` only. Designs are linear Bradley-Terry heads
on frozen feature blocks (features.py) or zero-shot scores; the controls never read the
input: `output_prior`, `shorter_wins`, `model_identity`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np
import torch
from features import load

if TYPE_CHECKING:
    from evaluate import Task

LAMBDAS = [1e-3, 1e-2, 1e-1, 1.0, 10.0]


def _standardize(x: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    mu = x[train_rows].mean(0)
    sd = x[train_rows].std(0) + 1e-6
    return (x - mu) / sd


def fit_bt(x: np.ndarray, pairs: np.ndarray, lam: float) -> np.ndarray:
    """Weights of a linear Bradley-Terry head: min mean softplus(-w.(x_c - x_r)) + lam |w|^2/2."""
    d = torch.tensor(x[pairs[:, 0]] - x[pairs[:, 1]], dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(d @ w)).mean() + lam * (w @ w) / 2
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def pair_accuracy(r: np.ndarray, pairs: np.ndarray) -> float:
    if len(pairs) == 0:
        return float("nan")
    diff = r[pairs[:, 0]] - r[pairs[:, 1]]
    return float(np.mean(np.where(np.abs(diff) <= 1e-9, 0.5, diff > 0)))


class HeadDesign:
    """A linear BT head on frozen feature columns; its L2 strength chosen by an inner
    3-fold CV over the training inputs."""

    def __init__(self, x: np.ndarray, train_on: str = "all") -> None:
        self.x = x
        self.train_on = train_on

    def scores(self, task: Task, train_recs: list[int], rng: random.Random) -> np.ndarray:
        rows = np.concatenate([task.by_rec[r] for r in train_recs])
        x = _standardize(self.x, rows)
        sampled_only = self.train_on == "sampled"
        inner = list(train_recs)
        rng.shuffle(inner)
        folds = [inner[i::3] for i in range(3)]
        best, best_acc = LAMBDAS[0], -1.0
        for lam in LAMBDAS:
            accs = []
            for f in range(3):
                fit_recs = [r for g in range(3) if g != f for r in folds[g]]
                p = task.pairs(fit_recs, sampled_only)
                held = task.pairs(folds[f], True)
                if len(p) == 0 or len(held) == 0:
                    continue
                accs.append(pair_accuracy(x @ fit_bt(x, p, lam), held))
            acc = float(np.mean(accs)) if accs else 0.0
            if acc > best_acc:
                best, best_acc = lam, acc
        p = task.pairs(train_recs, sampled_only)
        return x @ fit_bt(x, p, best) if len(p) else np.zeros(len(x))


class Fixed:
    """A zero-shot score (no training)."""

    def __init__(self, r: np.ndarray) -> None:
        self.r = r

    def scores(self, task, train_recs, rng):
        return self.r


class OutputPrior:
    def scores(self, task: Task, train_recs, rng):
        tally: dict[str, int] = defaultdict(int)
        for a, b in task.pairs(train_recs, False):
            tally[task.text[a]] += 1
            tally[task.text[b]] -= 1
        return np.array([tally.get(t, 0) for t in task.text], dtype=float)


class ShorterWins:
    def scores(self, task: Task, train_recs, rng):
        return -task.length.astype(float)


def writer_onehot(task: Task) -> np.ndarray:
    """One column per model that wrote a candidate (gold: its own column)."""
    names = sorted(set(task.model))
    return np.array([[m == n for n in names] for m in task.model], dtype=float)


class ModelIdentity:
    """A BT strength per writing model (one-hot features), fit on the training pairs."""

    def scores(self, task: Task, train_recs, rng):
        x = writer_onehot(task)
        p = task.pairs(train_recs, False)
        return x @ fit_bt(x, p, 1e-2) if len(p) else np.zeros(len(x))


CONTROLS = {"output_prior": OutputPrior, "shorter_wins": ShorterWins,
            "model_identity": ModelIdentity}


def designs(task: Task) -> dict[str, object]:
    """Every design whose feature blocks are cached for `task`. `+writer`: the same head
    with the writing model's one-hot beside it (the model_identity control's features), so
    that it can only beat that control by what it reads in the input and output."""
    out: dict[str, object] = {}
    blocks = {}
    writer = writer_onehot(task)
    for b in ["minilm", "lexical", "qwen15", "qwen05", "smollm2"]:
        try:
            blocks[b] = load(task.name, b)[0]
        except FileNotFoundError:
            continue
    if "minilm" in blocks:
        out["minilm_head"] = HeadDesign(blocks["minilm"]["x"])
    if "lexical" in blocks:
        out["lexical_head"] = HeadDesign(blocks["lexical"]["x"])
    for b in ["qwen15", "qwen05", "smollm2"]:
        if b not in blocks:
            continue
        f = blocks[b]
        scalars = np.stack([f["judge"], f["loglik"], f["loglik_sum"]], 1)
        out[f"{b}_judge"] = Fixed(f["judge"].astype(float))  # reward=judge (rewards/judge.py)
        out[f"{b}_loglik"] = Fixed(f["loglik"].astype(float))
        if "last" in f:  # hidden states: in the cache only (the repo keeps the scalars)
            out[f"{b}_last_head"] = HeadDesign(f["last"])
            out[f"{b}_mean_head"] = HeadDesign(f["mean"])
        out[f"{b}_judge+writer"] = HeadDesign(np.hstack([scalars[:, :1], writer]))
        if "lexical" in blocks:
            out[f"{b}_scalars+lexical"] = HeadDesign(np.hstack([scalars, blocks["lexical"]["x"]]))
            if "mean" in f:
                out[f"{b}_mean+scalars+lexical"] = HeadDesign(
                    np.hstack([f["mean"], scalars, blocks["lexical"]["x"]]))
            out[f"{b}_scalars+lexical+writer"] = HeadDesign(
                np.hstack([scalars, blocks["lexical"]["x"], writer]))
    return out
