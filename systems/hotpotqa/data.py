"""Read the official HotpotQA layout (a JSON list, or JSON lines) into a Dataset.

The retriever's corpus is every paragraph of every loaded question, once each,
as "Title: sentences" — the distractor setting's pool, shared across questions.
"""

from __future__ import annotations

from optimas_cli.data import Dataset, Example, numbered_records, resolve_data_path
from optimas_cli.schema import DataConfig

DEFAULT_PATH = "hotpotqa/hotpot_distractor_sample.jsonl"  # a registry name (optimas data list)
HINT = ("Set data.path to a HotpotQA file in the official layout (hotpot_dev_distractor_v1.json "
        "from hotpotqa.github.io, or JSON lines), or to a registry name (`optimas data list`).")


def load(cfg: DataConfig) -> Dataset:
    path = resolve_data_path(cfg.path, DEFAULT_PATH, HINT)
    examples, corpus, seen = [], [], set()
    for n, (where, r) in enumerate(numbered_records(path)):
        missing = {"question", "answer", "context"} - set(r)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)}; expected the official "
                             "HotpotQA layout {_id, question, answer, context, ...}")
        for title, sentences in r["context"]:
            passage = f"{title}: {''.join(sentences).strip()}"
            if passage not in seen:
                seen.add(passage)
                corpus.append(passage)
        examples.append(Example(id=str(r.get("_id", n)), inputs={"question": r["question"]},
                                target={"answer": r["answer"]},
                                meta={"type": r.get("type"), "level": r.get("level")}))
    return Dataset(examples=examples, resources={"corpus": corpus})
