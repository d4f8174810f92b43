"""What an embedded LLM says about a component's output: a judge's log-odds and its hidden states.

One pass of a local GGUF model (llama.cpp, in process) over a judge prompt gives three
things per candidate output:

- ``judge``: the log-odds the model puts on "Yes" against "No" as the next token after
  "Is the output correct for this input?" (zero-shot: the component's description, its
  inputs and the output are in the prompt);
- ``loglik``: the mean log-probability of the output's own tokens given the description
  and the inputs (how plausible the model finds this output for this input);
- ``last``: the final hidden state at the last prompt token (decoder-only pooling);
- ``mean``: the mean of the final hidden states over every prompt token.

The candidates of one input share everything before the output (the description and the
inputs, usually the long part), so that prefix is evaluated once and each candidate only
its own tail: the KV cache is cut back to the prefix between candidates.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimas_cli.rewards.text import value_str

_MARK = "\u0000OUTPUT\u0000"
QUESTION = "Is this output correct and useful for this input? Answer Yes or No."


@dataclass(frozen=True)
class LLMFeatures:
    judge: float  # log p("Yes") - log p("No") of the next token
    loglik: float  # mean log-prob of the output's tokens given the description and inputs
    loglik_sum: float  # their sum
    last: np.ndarray  # final hidden state at the last token
    mean: np.ndarray  # mean final hidden state over the prompt's tokens


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit * 2 // 3] + " [...] " + text[-limit // 3:]


def judge_messages(description: str, inputs: Mapping[str, Any], max_field_chars: int = 1500) -> str:
    """The judge's user turn, with ``_MARK`` where the output goes."""
    lines = [f"A step of a pipeline has this job: {description}", "", "Its input:"]
    lines += [f"{k}: {_clip(value_str(v), max_field_chars)}" for k, v in inputs.items()]
    lines += ["", "Its output:", _MARK, "", QUESTION]
    return "\n".join(lines)


def output_text(outputs: Mapping[str, Any], max_field_chars: int = 1500) -> str:
    return "\n".join(f"{k}: {_clip(value_str(v), max_field_chars)}" for k, v in outputs.items())


class LlamaFeaturizer:
    """LLMFeatures of outputs, from a local ``local/...`` model (one llama.cpp context).

    Not thread-safe: one caller at a time (a lock serializes calls).
    """

    def __init__(self, model: str, *, n_ctx: int = 2048, n_threads: int = 2,
                 n_batch: int = 64, max_field_chars: int = 1500) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from optimas_cli.lm.llama_load import load_llama
        from optimas_cli.lm.local import gguf_path, local_model

        self.model = model
        self.max_field_chars = max_field_chars
        self._llama_cpp = llama_cpp
        self.llm = load_llama(gguf_path(model), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                              n_threads=n_threads, n_threads_batch=n_threads, embedding=True,
                              verbose=False)
        template = local_model(model).chat_template or self.llm.metadata.get("tokenizer.chat_template")
        tok = self.llm._model.token_get_text
        self._format = Jinja2ChatFormatter(template=template, eos_token=tok(self.llm.token_eos()),
                                           bos_token=tok(self.llm.token_bos())) if template else None
        self._yes = self._first_token("Yes")
        self._no = self._first_token("No")
        self.n_embd = self.llm.n_embd()
        self._lock = threading.Lock()

    def _first_token(self, word: str) -> int:
        return self.llm.tokenize(word.encode(), add_bos=False, special=False)[0]

    def _prompt_parts(self, description: str, inputs: Mapping[str, Any]) -> tuple[str, str]:
        user = judge_messages(description, inputs, self.max_field_chars)
        if self._format is None:
            text = user + "\nAnswer:"
        else:
            text = self._format(messages=[{"role": "user", "content": user}]).prompt
        head, tail = text.split(_MARK)
        return head, tail

    def _logp(self, index: int) -> np.ndarray:
        """log-softmax of the logits at `index` of the last decoded batch."""
        logits = np.ctypeslib.as_array(self._llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, index),
                                       shape=(self.llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        return logits - (top + np.log(np.exp(logits - top).sum()))

    def _decode(self, tokens: list[int], n_past: int, scored: int = 0
                ) -> tuple[np.ndarray, np.ndarray, list[float], np.ndarray]:
        """Evaluate `tokens` after `n_past` cached ones. Returns the sum of their hidden
        states, the last one's, the log-probs of tokens 1..`scored`-1 given those before,
        and the log-softmax after the last token."""
        llama_cpp, llm = self._llama_cpp, self.llm
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        total = np.zeros(self.n_embd, dtype=np.float64)
        logps: list[float] = []
        row = np.zeros(self.n_embd, dtype=np.float32)
        for i in range(0, len(tokens), llm.n_batch):
            batch = tokens[i:i + llm.n_batch]
            llm._batch.set_batch(batch=batch, n_past=n_past + i, logits_all=True)
            llm._ctx.decode(llm._batch)
            for j in range(len(batch)):
                e = llama_cpp.llama_get_embeddings_ith(llm._ctx.ctx, j)
                row = np.ctypeslib.as_array(e, shape=(self.n_embd,))
                total += row
                if i + j + 1 < scored:
                    logps.append(float(self._logp(j)[tokens[i + j + 1]]))
            last_logp = self._logp(len(batch) - 1)
        return total, row.copy(), logps, last_logp

    def features(self, description: str, inputs: Mapping[str, Any],
                 candidates: Sequence[Mapping[str, Any]]) -> list[LLMFeatures]:
        """LLMFeatures of each candidate output (a dict of output fields) for one input."""
        head, tail = self._prompt_parts(description, inputs)
        with self._lock:
            llm = self.llm
            prefix = llm.tokenize(head.encode(), add_bos=True, special=True)
            tail_ids = llm.tokenize(tail.encode(), add_bos=False, special=True)
            room = llm.n_ctx() - 8 - len(prefix) - len(tail_ids)
            out = []
            llm.reset()
            prefix_sum, _, _, first_logp = self._decode(prefix, 0)
            for cand in candidates:
                text = output_text(cand, self.max_field_chars)
                ids = llm.tokenize(text.encode(), add_bos=False, special=False)[:max(1, room)]
                suffix_sum, last, logps, final = self._decode(ids + tail_ids, len(prefix),
                                                              scored=len(ids))
                logps = [float(first_logp[ids[0]])] + logps
                mean = (prefix_sum + suffix_sum) / (len(prefix) + len(ids) + len(tail_ids))
                out.append(LLMFeatures(judge=float(final[self._yes] - final[self._no]),
                                       loglik=float(np.mean(logps)), loglik_sum=float(np.sum(logps)),
                                       last=last.astype(np.float32), mean=mean.astype(np.float32)))
            return out
