"""Fit the local reward functions: one shared backbone, one head per component."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from optimas_cli.graph import System
from optimas_cli.rewards import LocalRewardModel, PreferencePair
from optimas_cli.schema import RewardConfig

log = logging.getLogger("optimas.fit")


def new_reward_model(system: System, cfg: RewardConfig, seed: int) -> LocalRewardModel:
    comps = {n: system.cfg.components[n].description for n in system.optimizable}
    return LocalRewardModel(comps, backbone=cfg.backbone, max_length=cfg.max_length, lora=cfg.lora,
                            seed=seed)


def fit_local_rewards(lrf: LocalRewardModel, pairs: list[PreferencePair], cfg: RewardConfig, *,
                      components: list[str] | None = None, head_only: bool = False,
                      seed: int = 0) -> dict[str, Any]:
    """Train on `pairs` (all heads and the backbone, or one head); returns held-out metrics."""
    result = lrf.fit(pairs, components=components, epochs=cfg.adapt_epochs if head_only else cfg.epochs,
                     lr=cfg.lr, head_lr=cfg.adapt_head_lr if head_only else cfg.head_lr,
                     batch_size=cfg.batch_size,
                     weight_by_gap=cfg.weight_by_gap, gap_floor=cfg.gap_floor,
                     train_backbone=not head_only, seed=seed, holdout=cfg.holdout)
    for comp, m in result.get("heldout", {}).items():
        log.info("LRF %s: held-out pairwise accuracy %s, Spearman %s (%s pairs, ties %s)", comp,
                 _fmt(m.get("pairwise_accuracy")), _fmt(m.get("spearman")), m.get("n_pairs"),
                 _fmt(m.get("tie_fraction")))
    return result


def save_reward_model(lrf: LocalRewardModel, directory: Path, result: dict[str, Any], run_dir) -> None:
    lrf.save(directory)
    run_dir.write_json(str(directory.relative_to(run_dir.path) / "metrics.json"), result)


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)
