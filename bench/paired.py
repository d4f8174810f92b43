"""Paired test difference between two sets of archived runs, matched by seed.

    python bench/paired.py bench/results/amazon_lora/runs/optimas bench/results/amazon_prompts/runs/optimas

`optimas compare` pairs methods of one system; this pairs any two run sets, e.g. a system
against its ablation (their systems differ by name, so compare keeps them apart). Each
argument is a folder of seed_N run folders (what bench/run.py archives); seeds found in
both are paired question by question on their final test scores, averaged per question over
the seeds (they share a split: the bench configs fix `data.seed`), with the 95% bootstrap
interval over questions that `optimas compare` reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optimas_cli.stats import PairedDiff, pooled_paired_diff


def final_scores(run: Path) -> list[float]:
    return json.loads((run / "summary.json").read_text())["test"]["final"]["scores"]


def paired(a: Path, b: Path) -> tuple[list[str], PairedDiff]:
    """a − b over the seeds both hold; the seeds' names and the difference."""
    seeds = sorted(p.parent.name for p in a.glob("seed_*/summary.json")
                   if (b / p.parent.name / "summary.json").exists())
    if not seeds:
        raise SystemExit(f"no seed_N/summary.json in both {a} and {b}")
    return seeds, pooled_paired_diff([(final_scores(a / s), final_scores(b / s), "test")
                                      for s in seeds])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("a", type=Path, help="the runs whose score comes first (a − b)")
    ap.add_argument("b", type=Path)
    args = ap.parse_args()
    seeds, d = paired(args.a, args.b)
    print(f"{args.a} − {args.b}, {', '.join(seeds)}: {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] "
          f"over {d.n} questions, better / worse {d.wins} / {d.losses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
