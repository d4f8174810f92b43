"""BM25 retrieval over a corpus built once when the system is built (bm25s)."""

from __future__ import annotations

import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from optimas_cli.components.base import BaseComponent
from optimas_cli.graph import Call

_INDEX_LOCK = threading.Lock()
_INDEXES: dict[int, BM25Index] = {}


class RetrieverParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    corpus: str = "corpus"  # the dataset resource holding the passages
    k: int = Field(5, ge=1)  # used when the component has no `k` variable
    max_passage_chars: int = Field(600, gt=0)
    stemmer: str | None = "english"  # PyStemmer language, or null
    numbered: bool = False  # "[1] ..." markers; tiny models tend to answer with the marker


class BM25Index:
    """A bm25s index over a list of passages; thread-safe to query."""

    def __init__(self, passages: list[str], stemmer: str | None):
        import bm25s

        self.passages = passages
        self._stemmer = None
        if stemmer:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(stemmer)
        tokens = bm25s.tokenize(passages, stopwords="en", stemmer=self._stemmer, show_progress=False)
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokens, show_progress=False)
        self._lock = threading.Lock()

    def search(self, query: str, k: int) -> list[int]:
        """Indexes of the top-k passages for `query`, best first.

        Ties break by corpus order (the lower index first), and a passage that shares no
        term with the query (BM25 score 0) is never returned: a query with no term in the
        corpus, or an empty one, returns []. The order depends on nothing but the scores,
        so every machine retrieves the same passages.
        """
        import bm25s
        import numpy as np

        q = bm25s.tokenize([query], stopwords="en", stemmer=self._stemmer, show_progress=False,
                           return_ids=False)
        if not q or not q[0]:
            return []
        with self._lock:
            scores = self._bm25.get_scores(q[0])
        order = np.lexsort((np.arange(len(scores)), -scores))  # score desc, then index asc
        return [int(i) for i in order[:k] if scores[i] > 0]


def shared_index(passages: list[str], stemmer: str | None) -> BM25Index:
    """One index per corpus object, however many retrievers use it."""
    with _INDEX_LOCK:
        key = id(passages)
        if key not in _INDEXES or _INDEXES[key].passages is not passages:
            _INDEXES[key] = BM25Index(passages, stemmer)
        return _INDEXES[key]


class RetrieverComponent(BaseComponent):
    """Query = the input fields joined; output = the top-k passages, one a line, best first."""

    Params = RetrieverParams
    variable_types = {"hyperparameter": {"k"}}

    def __init__(self, name, cfg, resources):
        super().__init__(name, cfg, resources)
        if len(self.outputs) != 1:
            raise ValueError(f"retriever '{name}' must have exactly one output")
        passages = resources.get(self.params.corpus)
        if not passages:
            raise ValueError(f"retriever '{name}': the dataset provides no corpus "
                             f"'{self.params.corpus}' (or it is empty)")
        self.index = shared_index(passages, self.params.stemmer)

    def forward(self, inputs: dict[str, Any], values: dict[str, Any], call: Call) -> dict[str, Any]:
        k = int(values.get("k", self.params.k))
        query = " ".join(str(inputs[f]) for f in self.inputs)
        hits = self.index.search(query, k)
        cap = self.params.max_passage_chars
        passages = [self.index.passages[i][:cap] for i in hits]
        if self.params.numbered:
            passages = [f"[{n}] {p}" for n, p in enumerate(passages, 1)]
        text = "\n".join(passages)
        return {self.outputs[0]: text}
