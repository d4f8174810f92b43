"""One method against the others on the same test questions (`optimas compare`'s second table).

For each other method of the same system, the runs of the two methods are matched by seed
(the same seed draws the same data split, so the same test questions in the same order),
and the per-question final scores are paired: reference − other, with a 95% bootstrap
interval over the questions and wins/losses (seeds that share a split are averaged per
question first; seeds on their own splits are resampled split first, then question,
`stats.pooled_paired_diff`). A difference is beyond noise only when its interval excludes 0
and the two-sided sign test over the questions agrees (p < 0.05); seeds that share one
split hold only the questions' noise, not the spread over splits.
"""

from __future__ import annotations

from typing import Any

from optimas_cli.stats import pooled_paired_diff

REFERENCE = "optimas"
ALPHA = 0.05  # the sign test's level for "beyond noise"


def verdict(low: float, high: float, sign_p: float) -> str:
    """"better" / "worse" when the interval excludes 0 and the sign test agrees, else
    "within noise"."""
    if sign_p < ALPHA and low > 0:
        return "better"
    if sign_p < ALPHA and high < 0:
        return "worse"
    return "within noise"


def versus(groups: dict[tuple[str, str], list[Any]], reference: str = REFERENCE
           ) -> list[dict[str, Any]]:
    """Rows `reference − method` per (system, other method); empty without the reference.
    `groups`: (method, system) -> runs (optimas_cli.compare.group)."""
    rows = []
    for (method, system), rs in groups.items():
        ref = groups.get((reference, system))
        if method == reference or not ref:
            continue
        by_seed = {r.seed: r for r in rs}
        pairs, seeds = [], []
        for r in ref:
            other = by_seed.get(r.seed)
            if (other is None or r.final_scores is None or other.final_scores is None
                    or len(r.final_scores) != len(other.final_scores) or r.data != other.data):
                continue
            pairs.append((r.final_scores, other.final_scores, r.data))
            seeds.append(r.seed)
        if not seeds:
            continue
        d = pooled_paired_diff(pairs, confidence=0.95)
        rows.append({"reference": reference, "method": method, "system": system,
                     "seeds": seeds, "n": d.n, "mean": d.mean, "low": d.low, "high": d.high,
                     "wins": d.wins, "losses": d.losses, "sign_p": d.sign_p,
                     "splits": len({data for _, _, data in pairs}),
                     "verdict": verdict(d.low, d.high, d.sign_p)})
    rows.sort(key=lambda r: (r["system"], r["method"]))
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    ref = rows[0]["reference"]
    lines = [f"| {ref} − method | system | seeds paired | questions | difference [95% CI] | "
             f"{ref} better / worse | sign test p | {ref} is |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {ref} − {r['method']} | {r['system']} | "
                     f"{', '.join(map(str, r['seeds']))} | {r['n']} | "
                     f"{r['mean']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] | "
                     f"{r['wins']} / {r['losses']} | {r['sign_p']:.3g} | {r['verdict']} |")
    one_split = any(r["splits"] == 1 and len(r["seeds"]) > 1 for r in rows)
    note = (f"\n{ref} against each method on the same test questions: runs matched by seed "
            "(same data split), final scores paired per question (seeds on one split averaged "
            "per question), 95% bootstrap interval resampling splits (seeds), then questions "
            "within them. Beyond noise (better / worse) only when the interval excludes 0 and "
            "the two-sided sign test over the questions agrees (p < 0.05)."
            + (" Rows whose seeds share one split hold only the questions' noise, not the "
               "spread over splits." if one_split else "") + "\n")
    return "\n".join(lines) + "\n" + note
