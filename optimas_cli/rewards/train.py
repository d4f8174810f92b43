"""Training reward heads (and the backbone) with the Bradley-Terry loss.

A pair says output A beat output B of a component on the same inputs; training pushes
``r(A) - r(B)`` up through ``-log sigmoid(r(A) - r(B))``, optionally weighted by the
pair's normalized score gap. :func:`fit_reward_model` trains all heads and the
backbone (the first fit of a run) or only some heads on cached backbone features
(head-only adaptation, nearly free per epoch).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from optimas_cli.rewards.model import CHANCE_ALPHA, LocalRewardModel
from optimas_cli.rewards.pairs import PreferencePair, canonical, input_key
from optimas_cli.schema import RewardConfig

log = logging.getLogger("optimas.rewards")

WARMUP_FRACTION = 0.1  # of the planned steps, linear warmup then linear decay
MAX_GRAD_NORM = 1.0


def bt_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Bradley-Terry pairwise loss: mean of ``w * -log sigmoid(r_chosen - r_rejected)``."""
    r_chosen = torch.as_tensor(r_chosen, dtype=torch.float32)
    r_rejected = torch.as_tensor(r_rejected, dtype=torch.float32, device=r_chosen.device)
    losses = -nn.functional.logsigmoid(r_chosen - r_rejected)
    if weights is not None:
        losses = losses * torch.as_tensor(weights, dtype=losses.dtype, device=losses.device)
    return losses.mean()


def gap_weights(gaps: torch.Tensor | Sequence[float], floor: float = 0.1) -> torch.Tensor:
    """``floor + (1 - floor) * gap / max_gap`` on absolute gaps; never 0, never NaN.

    All-zero gaps give every pair ``floor``; all-equal positive gaps give 1.
    """
    if not 0.0 < floor <= 1.0:
        raise ValueError(f"gap floor must be in (0, 1], got {floor}")
    g = torch.as_tensor(gaps, dtype=torch.float32).abs()
    g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    if g.numel() == 0:
        return g
    max_gap = g.max()
    if max_gap <= 0:
        return torch.full_like(g, floor)
    return floor + (1.0 - floor) * g / max_gap


def _checkpointing(backbone: Any, on: bool) -> None:
    """transformers' activation checkpointing on or off (`gradient_checkpointing_*` before v5)."""
    if on:
        enable = getattr(backbone, "activation_checkpointing_enable", None) \
            or backbone.gradient_checkpointing_enable
        enable({"use_reentrant": False})
    else:
        (getattr(backbone, "activation_checkpointing_disable", None)
         or backbone.gradient_checkpointing_disable)()


def fit_reward_model(
    model: LocalRewardModel,
    pairs: Sequence[PreferencePair],
    cfg: RewardConfig,
    *,
    components: Sequence[str] | None = None,
    train_backbone: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``model``'s heads (and its backbone or LoRA adapters) on ``pairs``, as ``cfg``
    (the run's ``reward`` config) says.

    ``pairs`` are split by input into train and held-out (``model.split``: an input keeps
    its side for the model's life, so held-out pairs were never trained on by this fit
    or an earlier one; ``cfg.holdout`` of the inputs seen for the first time). ``components``
    restricts training to those heads (the others are untouched). Batches of
    ``cfg.batch_size`` pairs hold all pairs of a few inputs (as in InstructGPT's reward
    model), so each distinct text is encoded once per batch; pairs are weighted by their
    score gap when ``cfg.weight_by_gap`` (``gap_weights`` with ``cfg.gap_floor``). AdamW,
    linear warmup and decay planned over the epochs (transformers' schedule), gradient
    norm clipped at 1.

    A backbone fit (``train_backbone``) trains the backbone at ``cfg.lr`` and the heads at
    ``cfg.head_lr`` for ``cfg.epochs``; then, when ``cfg.max_epochs`` > ``cfg.epochs``, it
    keeps training one epoch at a time until every trained head beats chance on its
    held-out pairs (see ``evaluate``), up to ``cfg.max_epochs``. Heads with too few held-out
    pairs to ever beat chance (5 are needed) do not hold training up. ``heldout_looks``
    counts the checks (each is a look at the held-out pairs, so a p-value after several
    looks is optimistic). ``train_backbone=False`` is the head-only adaptation: heads only,
    on cached features, ``cfg.adapt_epochs`` at ``cfg.adapt_head_lr``, no more. Seeded:
    ``seed`` drives the new inputs' split, batch order and dropout; the global RNG is
    untouched. ``cfg.gradient_checkpointing``: a backbone fit recomputes each layer's
    activations in the backward pass instead of keeping them (transformers' gradient
    checkpointing; the dropout masks are replayed, so the result is the same): less peak
    memory, more time.

    Returns ``{"heldout": {component: evaluate metrics}, "split": {component: pair and
    input counts}, "heldout_inputs": [held-out input keys among pairs], "loss_history":
    [mean train loss per epoch], "epochs", "heldout_looks", "steps", "seconds",
    "components": [trained heads], "train_backbone": bool}``.
    """
    t0 = time.perf_counter()
    if train_backbone:
        epochs, max_epochs, head_lr = cfg.epochs, cfg.max_epochs, cfg.head_lr
    else:
        epochs, max_epochs, head_lr = cfg.adapt_epochs, None, cfg.adapt_head_lr
    batch_size = cfg.batch_size
    trained = list(components) if components is not None else sorted({p.component for p in pairs})
    for c in trained:
        model.head(c)  # a KeyError for unknown components
    pairs = [p for p in pairs if p.component in set(trained)]
    if not pairs:
        raise ValueError("no preference pairs for the components to train")
    if model.trains:
        train_pairs, held_pairs = model.split.assign(pairs, holdout=cfg.holdout, seed=seed)
    else:  # a zero-shot model (rewards/judge.py) is measured on every pair
        train_pairs, held_pairs = [], list(pairs)
    bb_params = model.backbone_trainable() if train_backbone and train_pairs else []
    weights = (gap_weights([p.gap for p in train_pairs], floor=cfg.gap_floor).tolist()
               if cfg.weight_by_gap else [1.0] * len(train_pairs))
    data = _TrainingTexts(model, train_pairs, weights)

    param_groups: list[dict[str, Any]] = [
        {"params": [p for c in trained for p in model.head(c).parameters()], "lr": head_lr}]
    if bb_params:
        param_groups.append({"params": bb_params, "lr": cfg.lr})
    n_held = {c: sum(p.component == c for p in held_pairs) for c in trained}
    decisive = [c for c, n in n_held.items() if n and 0.5**n < CHANCE_ALPHA]
    cap = max(epochs, max_epochs or epochs) if decisive else epochs
    if not model.trains:  # a zero-shot model (rewards/judge.py): measured, not trained
        cap = 0
    total_steps = max(1, math.ceil(len(train_pairs) / max(1, batch_size)) * cap)
    opt = torch.optim.AdamW(param_groups, weight_decay=0.0)
    from transformers import get_linear_schedule_with_warmup  # slow to import: only when training

    sched = get_linear_schedule_with_warmup(opt, int(WARMUP_FRACTION * total_steps), total_steps)
    feats = None if bb_params or not train_pairs or not cap else model.features(data.seqs)
    if bb_params:
        model.backbone_trained()

    rng = random.Random(seed)
    loss_history: list[float] = []
    heldout: dict[str, dict[str, Any]] = {}
    looks = steps = 0
    # only the chosen backbone parameters get gradients during this fit (restored after)
    saved_flags = [(p, p.requires_grad) for p in model.backbone.parameters()]
    keep = {id(p) for p in bb_params}
    for p, _ in saved_flags:
        p.requires_grad_(id(p) in keep)
    checkpointing = cfg.gradient_checkpointing and bool(bb_params)
    if checkpointing:
        _checkpointing(model.backbone, True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            for epoch in range(cap):
                model.train()
                if not bb_params:
                    model.backbone.eval()
                tot = 0.0
                for batch in data.batches(batch_size, rng):
                    loss = data.loss(batch, feats)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_([p for g in param_groups for p in g["params"]],
                                                   MAX_GRAD_NORM)
                    opt.step()
                    sched.step()
                    steps += 1
                    tot += float(loss.detach()) * len(batch)
                loss_history.append(tot / max(1, len(train_pairs)))
                log.debug("epoch %d/%d loss %.4f", epoch + 1, cap, loss_history[-1])
                if epoch + 1 < epochs or epoch + 1 == cap:
                    continue
                heldout = _evaluate(model, held_pairs, bool(bb_params))
                looks += 1
                if all(heldout[c]["beats_chance"] for c in decisive):
                    break
                heldout = {}
        finally:
            model.eval()
            for p, flag in saved_flags:
                p.requires_grad_(flag)
            if checkpointing:
                _checkpointing(model.backbone, False)
    if held_pairs and not heldout:
        heldout = _evaluate(model, held_pairs, bool(bb_params))
    return {
        "heldout": heldout,
        "split": {c: _counts([p for p in train_pairs if p.component == c],
                             [p for p in held_pairs if p.component == c]) for c in trained},
        "heldout_inputs": sorted({input_key(p) for p in held_pairs}),
        "loss_history": loss_history,
        "epochs": len(loss_history),
        "heldout_looks": looks,
        "steps": steps,
        "seconds": time.perf_counter() - t0,
        "components": trained,
        "train_backbone": bool(bb_params),
    }


def _evaluate(model: LocalRewardModel, pairs: Sequence[PreferencePair], backbone_changed: bool):
    """Held-out metrics in the middle of a fit; features of a changing backbone are not kept."""
    if backbone_changed:
        model.backbone_trained()
    try:
        return model.evaluate(pairs)
    finally:
        if backbone_changed:
            model.backbone_trained()


def _counts(train: list[PreferencePair], held: list[PreferencePair]) -> dict[str, int]:
    return {
        "n_train_pairs": len(train),
        "n_heldout_pairs": len(held),
        "n_train_inputs": len({input_key(p) for p in train}),
        "n_heldout_inputs": len({input_key(p) for p in held}),
    }


class _TrainingTexts:
    """The distinct texts of the training pairs, and batches of pairs over them."""

    def __init__(self, model: LocalRewardModel, pairs: list[PreferencePair], weights: list[float]):
        self.model = model
        index: dict[tuple[str, str, str], int] = {}
        self.seqs: list[list[int]] = []
        self.comps: list[str] = []

        def text_id(comp: str, inputs: dict, outputs: dict) -> int:
            k = (comp, canonical(inputs), canonical(outputs))
            if k not in index:
                index[k] = len(self.seqs)
                self.seqs.append(model.encode(comp, inputs, outputs))
                self.comps.append(comp)
            return index[k]

        self.pair_texts = [(text_id(p.component, p.inputs, p.chosen),
                            text_id(p.component, p.inputs, p.rejected)) for p in pairs]
        self.weights = torch.tensor(weights, dtype=torch.float32, device=model.device)
        groups: dict[str, list[int]] = defaultdict(list)
        for n, p in enumerate(pairs):
            groups[input_key(p)].append(n)
        self.groups = list(groups.values())

    def batches(self, batch_size: int, rng: random.Random) -> Iterator[list[int]]:
        """Shuffled groups (pairs sharing inputs) packed into batches of ~batch_size pairs."""
        order = list(range(len(self.groups)))
        rng.shuffle(order)
        cur: list[int] = []
        for g in order:
            members = list(self.groups[g])
            rng.shuffle(members)
            for n in members:
                cur.append(n)
                if len(cur) >= batch_size:
                    yield cur
                    cur = []
        if cur:
            yield cur

    def loss(self, batch: list[int], feats: torch.Tensor | None) -> torch.Tensor:
        """Weighted BT loss of a batch; ``feats``: cached features (heads only) or None."""
        m = self.model
        texts = sorted({t for n in batch for t in self.pair_texts[n]})
        pos = {t: k for k, t in enumerate(texts)}
        f = feats[torch.tensor(texts, device=m.device)] if feats is not None else (
            m.embed_ids([self.seqs[t] for t in texts]))
        r = m.apply_heads(f, [self.comps[t] for t in texts])
        chosen = torch.tensor([pos[self.pair_texts[n][0]] for n in batch], device=m.device)
        rejected = torch.tensor([pos[self.pair_texts[n][1]] for n in batch], device=m.device)
        return bt_loss(r[chosen], r[rejected], self.weights[torch.tensor(batch, device=m.device)])
