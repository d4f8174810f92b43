"""Reference accuracies of the next-item task that need no model, from the labels alone.

A 4-way choice has floors a system must beat before it has learned anything:
- `random`: a uniform guess, 25% in expectation on any label distribution;
- `always_first`: always index 0 — the share of rows whose answer is 0 (LLMs often favour
  the first option; metric.py reports `chose_first` to expose it);
- `best_constant`: always the most frequent index, the best a position-only rule can do
  (it is chosen by looking at the labels, so it is an upper reference, not a floor);
- `word_overlap`: a non-LLM heuristic — the candidate sharing the most words with the session
  (ties to the lowest index), a measure of how much the titles alone give away.

    python -m systems.amazon.floors                      # both files
    python -m systems.amazon.floors --path both --split test --test-size 50 --seed 0
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

from optimas_cli.data import Example, split
from optimas_cli.schema import DataConfig
from systems.amazon.data import NUM_CHOICES, load

_WORD = re.compile(r"\w{2,}")


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def overlap_choice(example: Example) -> int:
    """The candidate sharing the most words with the session (the lowest index on a tie)."""
    seen = words(example.inputs["session"])
    overlaps = [len(words(c) & seen) for c in example.meta["choices"]]
    return overlaps.index(max(overlaps))


def floors(examples: list[Example]) -> dict[str, object]:
    """The label distribution and the reference accuracies of `examples`."""
    n = len(examples)
    if n == 0:
        raise ValueError("floors: no examples")
    counts = Counter(e.target["answer"] for e in examples)
    dist = {i: counts.get(i, 0) for i in range(NUM_CHOICES)}
    return {
        "n": n,
        "labels": dist,
        "random": 1 / NUM_CHOICES,
        "always_first": dist[0] / n,
        "best_constant": max(dist.values()) / n,
        "best_constant_index": max(dist, key=dist.get),
        "word_overlap": sum(overlap_choice(e) == e.target["answer"] for e in examples) / n,
    }


def table(rows: dict[str, dict]) -> str:
    out = ["| rows | n | answers 0/1/2/3 | random | always first | best constant | word overlap |",
           "|---|---:|---|---:|---:|---:|---:|"]
    for name, f in rows.items():
        labels = "/".join(str(f["labels"][i]) for i in range(NUM_CHOICES))
        out.append(f"| {name} | {f['n']} | {labels} | {f['random']:.1%} | {f['always_first']:.1%}"
                   f" | {f['best_constant']:.1%} (index {f['best_constant_index']}) "
                   f"| {f['word_overlap']:.1%} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default=None, help="primary | multilingual | both | a CSV "
                    "(default: each file, then both)")
    ap.add_argument("--split", choices=("train", "val", "test"), default=None,
                    help="only this split, drawn as a run draws it")
    ap.add_argument("--train-size", type=int, default=30)
    ap.add_argument("--val-size", type=int, default=20)
    ap.add_argument("--test-size", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rows = {}
    for path in [a.path] if a.path else ["primary", "multilingual", "both"]:
        cfg = DataConfig(path=path, train_size=a.train_size, val_size=a.val_size,
                         test_size=a.test_size, seed=a.seed)
        dataset = load(cfg)
        examples = dataset.examples
        if a.split:
            examples = split(dataset, cfg)[a.split]
            path = f"{path}, {a.split} split (seed {a.seed})"
        rows[path] = floors(examples)
    print(table(rows))


if __name__ == "__main__":
    main()
