"""The optimization history: one record per step in history.jsonl, and the accept rule.

Every method (the Optimas loop and each baseline) writes the same records, so the
final stage, `optimas show` and `optimas compare` read them alike:

    {"iteration": 0, "kind": "initial", "val": {mean, std, n, failed, scores}, "state",
     "system_runs", "lm_calls", "lm_requests"}
    {"iteration": i, "kind": "iteration", "component" ("a+b" when one iteration optimized
     several, each then one of "steps"), "val_before", "val_after",
     "accepted", "changed", "decision" ({rule, gain, paired: {mean, low, high, ...}, bound,
     sign_p_greater}),
     "scores_after" (the candidate's val score per example), "tried" (the candidate
     state validated; "validation_of": k when iteration k had validated it already),
     "state" (the accepted state after this step), "system_runs", "lm_calls", "lm_requests", ...}

A candidate is accepted by comparing it with the incumbent on the same validation
examples (`decide`): by the mean gain, or by a one-sided paired bootstrap bound or sign
test at a set confidence (optimizer.accept_rule).
"""

from __future__ import annotations

from typing import Any

from optimas_cli.graph import State
from optimas_cli.schema import OptimizerConfig
from optimas_cli.stats import lower_bound, paired_diff, sign_test_greater

SHORT_KEYS = ("mean", "std", "n", "failed", "scores")


def short(summary: dict[str, Any]) -> dict[str, Any]:
    """What a history record keeps of an evaluation summary."""
    return {k: summary[k] for k in SHORT_KEYS if k in summary}


def accepted_val(record: dict[str, Any]) -> float:
    """Validation score of the system a history record leaves in place."""
    if record.get("kind") == "initial":
        return record["val"]["mean"]
    return record["val_after"] if record["accepted"] else record["val_before"]


def accepted_scores(history: list[dict[str, Any]]) -> list[float] | None:
    """Per-example validation scores of the system the history leaves in place (None: unknown)."""
    for record in reversed(history):
        if record.get("kind") == "initial":
            return record["val"].get("scores")
        if record.get("accepted"):
            return record.get("scores_after")
    return None


def decide(candidate: dict[str, Any], incumbent_mean: float, incumbent_scores: list[float] | None,
           opt: OptimizerConfig, seed: int = 0) -> dict[str, Any]:
    """Accept `candidate` (a val summary) over the incumbent? With the paired difference.

    mean:      mean gain > accept_threshold (the means are over the same examples);
    bootstrap: the paired difference exceeds accept_threshold with confidence
               accept_confidence: the one-sided bootstrap lower bound ("bound") > threshold;
    sign:      more wins than losses, gain > accept_threshold, and the one-sided exact sign
               test (McNemar's on a 0/1 metric) gives p < 1 - accept_confidence.

    Both paired rules are one-sided, as acceptance is: a candidate is taken when it is
    better with the stated confidence. "paired" is the two-sided interval at
    accept_confidence, for the record.
    """
    gain = candidate["mean"] - incumbent_mean
    out: dict[str, Any] = {"rule": opt.accept_rule, "gain": gain}
    scores = candidate.get("scores")
    if scores is not None and incumbent_scores is not None and len(scores) == len(incumbent_scores):
        d = paired_diff(scores, incumbent_scores, confidence=opt.accept_confidence, seed=seed)
        out["paired"] = d.to_dict()
        out["bound"] = round(lower_bound(scores, incumbent_scores,
                                         confidence=opt.accept_confidence, seed=seed), 6)
        out["sign_p_greater"] = round(sign_test_greater(d.wins, d.losses), 6)
    elif opt.accept_rule != "mean":
        raise ValueError("a paired accept rule needs per-example validation scores of both systems")
    if opt.accept_rule == "mean":
        out["accepted"] = gain > opt.accept_threshold
    elif opt.accept_rule == "bootstrap":
        out["accepted"] = out["bound"] > opt.accept_threshold
    else:
        p = out["paired"]
        out["accepted"] = (p["wins"] > p["losses"] and gain > opt.accept_threshold
                           and out["sign_p_greater"] < 1 - opt.accept_confidence)
    return out


def validated_before(history: list[dict[str, Any]], state: State) -> dict[str, Any] | None:
    """The val summary ({mean, scores, iteration}) of `state` if an earlier step validated
    it (its "tried" state, or the initial state), else None: the same system on the same
    validation examples need not be paid for twice."""
    for record in history:
        tried = record["state"] if record.get("kind") == "initial" else record.get("tried")
        if tried == state:
            val = record.get("val", {}) if record.get("kind") == "initial" else {
                "mean": record["val_after"], "scores": record.get("scores_after")}
            return {"mean": val["mean"], "scores": val.get("scores"),
                    "iteration": record["iteration"]}
    return None


def steps_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The component steps of a history record: an iteration that optimized several
    components (optimizer.components_per_iteration) lists them in `steps`, one that
    optimized one is its own step, and the initial record has none."""
    if record.get("kind") != "iteration":
        return []
    return record.get("steps", [record])


def contributions(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What each variable contributed: for every accepted step, the variables whose value it
    changed ("component.variable", joined by "+" when one step changed several) and its paired
    validation gain over the system before it; gains of the same key add up.

    Steps change the system in turn, so each gain is measured on top of the earlier ones.
    """
    out: dict[str, dict[str, Any]] = {}
    current: State | None = None
    for record in history:
        state = record.get("state")
        if record.get("kind") == "initial":
            current = state
            continue
        if not record.get("accepted") or state is None or current is None:
            continue
        changed = [f"{c}.{v}" for c in state for v in state[c]
                   if current.get(c, {}).get(v) != state[c][v]]
        if changed:
            entry = out.setdefault("+".join(changed), {"steps": [], "val_gain": 0.0})
            entry["steps"].append(record.get("iteration"))
            entry["val_gain"] += record["val_after"] - record["val_before"]
        current = state
    return out
