"""What an adapter update trains on: the component's own prompts, as the model sees them,
and its local reward as the reward of a completion.

A prompt is the exact request the component sends (optimas_cli/components/llm.py
`request`), rendered to the text the model reads: a chat request through the tokenizer's
chat template (the GGUF's own, which llama.cpp applies too). A completion is read the way
serving reads it: cut at the component's stop strings, then parsed into output fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from optimas_cli.lm.base import LMRequest


@dataclass
class TrainTask:
    """Training prompts with the reward of a completion of each.

    `reward(indices, texts)`: the local reward of completion `texts[j]` of prompt
    `prompts[indices[j]]` (the text already cut at `stop`).
    """

    prompts: list[str]
    reward: Callable[[Sequence[int], Sequence[str]], list[float]]
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 64
    # DPO only: (prompt index, chosen text, rejected text), from ranked samples
    pairs: list[tuple[int, str, str]] = field(default_factory=list)


def prompt_text(tokenizer: Any, request: LMRequest, max_tokens: int) -> str:
    """The text the model reads for `request`, keeping its last `max_tokens` tokens."""
    if request.is_chat:
        text = tokenizer.apply_chat_template(request.chat_messages(), tokenize=False,
                                             add_generation_prompt=True)
    else:
        text = request.prompt or ""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[-max_tokens:])


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to its first stop string, as llama.cpp returns a completion."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def stop_token_ids(tokenizer: Any, stop: Sequence[str]) -> list[int]:
    """Ids of the vocabulary tokens that contain a stop string (generation ends on them)."""
    stops = [s for s in stop if s]
    if not stops:
        return []
    vocab = tokenizer.get_vocab()
    ids = sorted(vocab.values())
    texts = tokenizer.batch_decode([[i] for i in ids])
    return [i for i, t in zip(ids, texts, strict=True) if any(s in t for s in stops)]
