"""How DSPy's calls are rendered and parsed: our adapters and the choice among DSPy's.

Task predictors (`make_adapter`):

``"optimas"`` (ComponentAdapter)
    Renders exactly as the llm component itself does (completion-style few-shot
    document or chat, same labels, stop and token limits) and parses with the
    component's parser. DSPy's optimizers then score the very prompts the optimized
    system will send, the requests are byte-identical to `System.run`'s (shared cache
    entries), and small models that cannot emit DSPy's field markers still produce
    parseable text.
``"chat"`` / ``"json"``
    DSPy's stock ChatAdapter (``[[ ## field ## ]]`` markers, JSON fallback) or
    JSONAdapter. What DSPy optimizes is then a differently rendered prompt than the
    one the converted system runs.

DSPy's own meta-prompts (instruction proposers, GEPA reflection, `proposer_adapter`):
DSPy's stock adapters, or MetaCompletionAdapter (the same meta-prompt as a plain
completion document) for the embedded models, which cannot produce DSPy's formats.

Unparseable replies: ComponentAdapter never fails (the component's parser falls back
to the whole reply as the first output field, as in `System.run`);
MetaCompletionAdapter raises DSPy's AdapterParseError when the reply has no text for
the first output field, so DSPy treats it like any reply its own adapters reject.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from typing import Any

import dspy
from dspy.adapters.utils import format_field_value, parse_value
from dspy.utils.exceptions import AdapterParseError

from optimas_cli.components.llm import LLMComponent
from optimas_cli.dspy.predict import demo_dict
from optimas_cli.lm.base import LOCAL_PREFIX
from optimas_cli.lm.style import PromptStyle

try:  # DSPy 3.4's marker for adapter-owned messages= calls (silences its deprecation warning)
    from dspy.clients._deprecation import adapter_message_call
except ImportError:  # older DSPy: no marker needed
    adapter_message_call = None

ADAPTERS = ("optimas", "chat", "json")
PROPOSER_ADAPTERS = ("auto", "dspy", "completion")


class TextAdapter(dspy.Adapter):
    """An adapter that sends one rendered message list and parses each reply text itself.

    Subclasses implement `format` and `parse`; `extra_lm_kwargs` go with every LM call.
    """

    extra_lm_kwargs: dict[str, Any] = {}

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[dspy.Signature],
                 demos: list[Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        messages = self.format(signature, demos, inputs)
        with adapter_message_call(lm, messages) if adapter_message_call else nullcontext():
            outputs = lm(messages=messages, **{**lm_kwargs, **self.extra_lm_kwargs})
        texts = [o.get("text") if isinstance(o, dict) else o for o in outputs]
        return [self.parse(signature, t or "") for t in texts]

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[dspy.Signature],
                    demos: list[Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        return self(lm, lm_kwargs, signature, demos, inputs)


class ComponentAdapter(TextAdapter):
    """Renders and parses a predictor's call exactly as its llm component does (module doc)."""

    def __init__(self, comp: LLMComponent, style: PromptStyle | None = None):
        super().__init__()
        self.comp = comp
        self.style = style  # the component's prompt style for the call's model (None: its own)

    def format(self, signature: type[dspy.Signature], demos: list[Any],
               inputs: dict[str, Any]) -> list[dict[str, Any]]:
        fields = list(self.comp.inputs) + list(self.comp.outputs)
        complete = [d for d in (demo_dict(x, fields) for x in demos) if d is not None]
        rendered = self.comp.render({f: inputs.get(f, "") for f in self.comp.inputs},
                                    signature.instructions, complete, self.style)
        if "prompt" in rendered:
            return [{"role": "user", "content": rendered["prompt"]}]
        return [{"role": r, "content": c} for r, c in rendered["messages"]]

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        return self.comp.parse(completion or "")


class MetaCompletionAdapter(TextAdapter):
    """DSPy's meta-prompts (instruction proposers, reflection) as a completion document.

    DSPy's ChatAdapter/JSONAdapter ask for ``[[ ## field ## ]]`` markers or a
    JSON object, which the embedded 135M/270M models do not produce (README,
    "Optimizers and comparison"). This adapter renders the same signature --
    DSPy's instructions, input fields and values -- as a plain document that ends
    with the first output field's label, sends it as a raw completion, and reads the
    continuation up to the next field label or blank line. The optimizer's logic and
    the meta-prompt's content stay DSPy's; only the wire format changes. Output
    fields after the first are read from "Label:" lines when present, else left
    empty. A reply with no text before its first blank line raises AdapterParseError.
    """

    # No "\n\n" stop: small models often open with a blank line (an empty answer); the
    # value is cut at its first blank line by parse() instead.
    extra_lm_kwargs = {"optimas_completion": True}

    def _label(self, name: str, field_info: Any) -> str:
        prefix = (field_info.json_schema_extra or {}).get("prefix") or name.replace("_", " ").capitalize()
        return prefix.rstrip().rstrip(":")

    def format(self, signature: type[dspy.Signature], demos: list[Any],
               inputs: dict[str, Any]) -> list[dict[str, Any]]:
        # No "Label: description" lines for outputs: small models copy them as the answer.
        lines = [signature.instructions.strip(), ""]
        outs = list(signature.output_fields.items())
        for name, f in signature.input_fields.items():
            if name in inputs:
                lines.append(f"{self._label(name, f)}: {format_field_value(f, inputs[name])}")
        lines += ["", f"{self._label(*outs[0])}:"]
        return [{"role": "user", "content": "\n".join(lines)}]

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        outs = list(signature.output_fields.items())
        labels = {self._label(n, f).lower(): n for n, f in outs}
        stops = [self._label(n, f) for n, f in signature.fields.items()]
        pattern = "|".join(re.escape(x) for x in sorted(stops, key=len, reverse=True))
        chunks = re.split(rf"^\s*({pattern})\s*:", completion.strip(), flags=re.IGNORECASE | re.MULTILINE)

        def paragraph(text: str) -> str:  # a field's value ends at the first blank line
            return re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0].strip()

        found = {outs[0][0]: paragraph(chunks[0])}
        for label, value in zip(chunks[1::2], chunks[2::2], strict=False):
            name = labels.get(label.lower())
            if name and not found.get(name):
                found[name] = paragraph(value)
        if not found[outs[0][0]]:
            raise AdapterParseError(adapter_name=type(self).__name__, signature=signature,
                                    lm_response=completion,
                                    message=f"no text for the output field {outs[0][0]!r}")
        return {n: parse_value(found.get(n, ""), f.annotation) if f.annotation is not str
                else found.get(n, "") for n, f in outs}


def make_adapter(kind: str, comp: LLMComponent, style: PromptStyle | None = None) -> dspy.Adapter:
    """The adapter of a task predictor: optimas (ComponentAdapter, rendering in `style`),
    chat or json (DSPy's)."""
    if kind == "optimas":
        return ComponentAdapter(comp, style)
    if kind == "chat":
        return dspy.ChatAdapter()
    if kind == "json":
        return dspy.JSONAdapter()
    raise ValueError(f"unknown DSPy adapter {kind!r}; use one of {list(ADAPTERS)}")


def proposer_adapter(kind: str, model: str) -> dspy.Adapter | None:
    """The adapter of DSPy's meta-prompts; None means DSPy's own choice (kind "dspy").

    dspy: what DSPy uses by itself (ChatAdapter with JSON fallback; GEPA's
    proposer: JSONAdapter). completion: MetaCompletionAdapter. auto: completion
    for the embedded `local/` models (they cannot produce DSPy's formats, see
    MetaCompletionAdapter), dspy for API models.
    """
    if kind == "auto":
        kind = "completion" if model.startswith(LOCAL_PREFIX) else "dspy"
    if kind == "completion":
        return MetaCompletionAdapter()
    if kind == "dspy":
        return None
    raise ValueError(f"unknown proposer adapter {kind!r}; use one of {list(PROPOSER_ADAPTERS)}")
