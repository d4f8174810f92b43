"""Fit the local reward functions: one shared backbone, one head per component."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from optimas_cli import heap
from optimas_cli.graph import System
from optimas_cli.layout import METRICS
from optimas_cli.rewards import LocalRewardModel, PreferencePair, fit_reward_model
from optimas_cli.rewards.judge import new_reward_model as make_reward_model
from optimas_cli.rewards.trust import component_trust
from optimas_cli.schema import RewardConfig

log = logging.getLogger("optimas.fit")


def new_reward_model(system: System, cfg: RewardConfig, seed: int) -> LocalRewardModel:
    comps = {n: system.cfg.components[n].description for n in system.optimizable}
    return make_reward_model(comps, cfg.backbone, max_length=cfg.max_length, lora=cfg.lora,
                             seed=seed)


def fit_local_rewards(lrf: LocalRewardModel, pairs: list[PreferencePair], cfg: RewardConfig, *,
                      components: list[str] | None = None, head_only: bool = False,
                      seed: int = 0) -> dict[str, Any]:
    """Train on `pairs` and return held-out metrics.

    A fit of the backbone (the first of a run) trains for `cfg.epochs`, then on up to
    `cfg.max_epochs` until every head beats chance on its held-out pairs; whether it did
    is in the metrics (`beats_chance`, with accuracy, p-value and n). Head-only adaptation
    trains `cfg.adapt_epochs`. Inputs held out by an earlier fit of `lrf` stay held out.
    Each component's held-out metrics carry `trust` (optimas_cli/rewards/trust.py): whether
    its head ranked its own outputs better than chance and the input-blind controls, which
    the update step needs before the head may rank anything.
    """
    result = fit_reward_model(lrf, pairs, cfg, components=components, train_backbone=not head_only,
                              seed=seed)
    heap.release()  # the fit's activations: freed, but kept by malloc until given back
    for comp, m in result["heldout"].items():
        m["trust"] = component_trust(lrf, comp, pairs)
        log.info("LRF %s: held-out pairwise accuracy %s (p=%s vs chance), Spearman %s "
                 "(%s pairs, ties %s) after %d epochs", comp, _fmt(m["pairwise_accuracy"]),
                 _fmt(m["p_value"]), _fmt(m["spearman"]), m["n_pairs"], _fmt(m["tie_fraction"]),
                 result["epochs"])
        own = m.get("sampled")
        if own is None or own["n_pairs"] != m["n_pairs"]:  # some held-out pairs are gold's
            log.info("LRF %s on the held-out pairs of its own outputs (no gold answer): %s",
                     comp, f"accuracy {_fmt(own['pairwise_accuracy'])} on {own['n_pairs']} "
                           f"(p={_fmt(own['p_value'])})" if own else "none")
        if not m["trust"]["trusted"]:
            log.info("LRF %s is not trusted to rank: %s", comp, m["trust"]["reason"])
        if not m["beats_chance"]:
            log.warning("LRF %s does not beat chance on its %d held-out pairs (accuracy %s)",
                        comp, m["n_pairs"], _fmt(m["pairwise_accuracy"]))
    for comp in result["components"]:
        if comp not in result["heldout"]:
            log.warning("LRF %s: no held-out pairs, its alignment is not measured", comp)
    return result


def save_reward_model(lrf: LocalRewardModel, directory: Path, result: dict[str, Any], run_dir) -> None:
    lrf.save(directory)
    run_dir.write_json(str(directory.relative_to(run_dir.path) / METRICS), result)


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)
