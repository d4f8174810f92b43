"""Which prompt form a model gets: a chat conversation or a completion document.

`auto` decides by model. The embedded `local/` models get completion documents: tiny
models continue a few-shot document far more reliably than they follow chat turns, and
every benchmark, tuned prompt and the recorded `make reproduce` cache were made with them.
An API model gets chat, which is what a served instruct model expects (sent a document as
one chat turn, it answers in sentences: "The capital of Kenya is Nairobi."), except on
litellm's text-completion providers (`text-completion-openai/...`), which take documents
only. A component's `params.style` overrides `lm.prompt_style`, which overrides `auto`.
"""

from __future__ import annotations

import functools
from typing import Literal

from .base import LOCAL_PREFIX

PromptStyle = Literal["chat", "completion"]
StyleSetting = Literal["auto", "chat", "completion"]
# litellm providers that serve the completions endpoint only
TEXT_COMPLETION_PROVIDERS = frozenset({"text-completion-openai", "text-completion-codestral"})


@functools.lru_cache(maxsize=256)
def model_style(model: str) -> PromptStyle:
    """The form `auto` picks for `model` (module doc); no model named: the embedded
    default's, completion."""
    if not model or model.startswith(LOCAL_PREFIX):
        return "completion"
    from .api import provider_of  # bare names ask litellm, imported only then

    return "completion" if provider_of(model) in TEXT_COMPLETION_PROVIDERS else "chat"


def resolve_style(model: str, *settings: StyleSetting) -> PromptStyle:
    """The first setting that is not `auto` (most specific first), else `model_style`."""
    for setting in settings:
        if setting != "auto":
            return setting
    return model_style(model)
