"""Read PubMedQA JSON lines {index, key, question, context: [str], groundtruth} into a Dataset.

By default train and val are drawn from the train file (500 questions) and test from the
official test file (300 questions, no PubMed id in common): the test file's examples are
marked `meta["split"] = "test"`, which optimas_cli.data.split honours. With data.path set,
that one file feeds all three splits by a seeded shuffle.
"""

from __future__ import annotations

from pathlib import Path

from optimas_cli.data import Dataset, Example, numbered_records, resolve_data_path
from optimas_cli.schema import DataConfig

DEFAULT_PATH = "pubmedqa/pubmedqa_train.jsonl"  # registry names (optimas data list)
TEST_PATH = "pubmedqa/pubmedqa_test.jsonl"
HINT = ("Set data.path to PubMedQA JSON lines ({index, key, question, context, groundtruth}), "
        "or to a registry name (`optimas data list`).")
LABELS = ("yes", "no", "maybe")


def read_examples(path: Path, **meta) -> list[Example]:
    examples = []
    for n, (where, r) in enumerate(numbered_records(path)):
        missing = {"question", "context", "groundtruth"} - set(r)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)}; expected "
                             "{index, key, question, context, groundtruth}")
        label = str(r["groundtruth"]).strip().lower()
        if label not in LABELS:
            raise ValueError(f"{where} has groundtruth {r['groundtruth']!r}; "
                             f"expected one of {', '.join(LABELS)}")
        context = r["context"]
        text = " ".join(context) if isinstance(context, list) else str(context)
        examples.append(Example(id=str(r.get("key", n)),
                                inputs={"question": r["question"], "context": text},
                                target={"answer": label},
                                meta={"index": r.get("index"), **meta}))
    return examples


def load(cfg: DataConfig) -> Dataset:
    path = resolve_data_path(cfg.path, DEFAULT_PATH, HINT)
    examples = read_examples(path)
    if cfg.path is None:
        examples += read_examples(resolve_data_path(None, TEST_PATH, HINT), split="test")
    return Dataset(examples=examples)
