"""An LLM call: instruction + demonstrations + input fields -> output fields.

Two prompt styles. `completion` writes a few-shot document that ends with the
first output's label, which small base and instruct models continue far more
reliably than they follow chat instructions. `chat` sends the instruction as
the system message, each demonstration as a user turn (its inputs) and an assistant
turn (its outputs as `Label: value` lines), then the input as the last user turn.
`params.style: auto` (the default) leaves the choice to `lm.prompt_style` and then to
the model (lm/style.py: completion for the embedded models, chat for API models).
Either way the reply is read by `parse`: one output up to the stop string, several
from `Label: value` lines.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from optimas_cli.components.base import BaseComponent
from optimas_cli.graph import Call
from optimas_cli.lm.base import LOCAL_PREFIX, LMRequest
from optimas_cli.lm.style import PromptStyle, resolve_style


class LLMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    style: Literal["auto", "completion", "chat"] = "auto"  # auto: lm.prompt_style, then by model
    instruction: str = ""  # used when the component has no prompt variable
    demos: list[dict[str, Any]] = Field(default_factory=list)  # likewise: fixed demonstrations
    model: str | None = None  # used when it has no model variable; default lm.model
    labels: dict[str, str] = Field(default_factory=dict)  # field -> label shown in the prompt
    max_tokens: int | None = Field(None, gt=0)  # default lm.max_tokens
    temperature: float | None = Field(None, ge=0)  # default lm.temperature
    stop: list[str] | None = None  # default: newline for one output, blank line for several
    max_field_chars: int = Field(2000, gt=0)  # long inputs (retrieved text) are cut to this


class LLMComponent(BaseComponent):
    Params = LLMParams
    variable_types = {"prompt": None, "model": None, "hyperparameter": {"temperature", "max_tokens"},
                      "weights": None}
    stochastic = True

    def __init__(self, name, cfg, resources):
        super().__init__(name, cfg, resources)
        lm_cfg = resources.get("lm_config")
        self.default_model = self.params.model or (lm_cfg.model if lm_cfg else None)
        self.default_temperature = lm_cfg.temperature if lm_cfg else 0.0
        self.default_max_tokens = lm_cfg.max_tokens if lm_cfg else 64
        self.lm_style = lm_cfg.prompt_style if lm_cfg else "auto"
        for vname, var in self.variables.items():
            model = var.base_model or self.default_model
            if var.type == "weights" and not (model or "").startswith(LOCAL_PREFIX):
                raise ValueError(f"component '{name}': weights variable '{vname}' needs a local/... "
                                 f"model to adapt (base_model or the component's model), got {model!r}")

    @classmethod
    def check_config(cls, name, cfg):
        problems = super().check_config(name, cfg)
        types = [v.type for v in cfg.variables.values()]
        if "weights" in types and "model" in types:
            problems.append(("variables", f"component '{name}': a weights variable (an adapter of one "
                                          f"base model) and a model variable cannot be combined"))
        if types.count("weights") > 1:
            problems.append(("variables", f"component '{name}': at most one weights variable"))
        for vname, var in cfg.variables.items():  # (lm.model, the default, is checked at build)
            model = var.base_model or cfg.params.get("model")
            if var.type == "weights" and model and not str(model).startswith(LOCAL_PREFIX):
                problems.append((f"variables.{vname}", f"component '{name}': weights variable "
                                 f"'{vname}' needs a local/... model to adapt, got {model!r}"))
        return problems

    def weights_model(self) -> str | None:
        """The model a `weights` variable's adapter belongs to (None: no weights variable)."""
        var = next((v for v in self.variables.values() if v.type == "weights"), None)
        return None if var is None else var.base_model or self.default_model

    def model_of(self, values: dict[str, Any]) -> str | None:
        """The model a call with these variable values goes to (None: none configured)."""
        return self.weights_model() or next(
            (v for _, v in self.values_of(values, "model")), self.default_model)

    def prompt_style(self, model: str | None) -> PromptStyle:
        """The prompt form of a call to `model`: params.style, lm.prompt_style, then by model."""
        return resolve_style(model or "", self.params.style, self.lm_style)

    # ---------------------------------------------------------------- prompt

    def label(self, f: str) -> str:
        return self.params.labels.get(f) or f.replace("_", " ").capitalize()

    def _field(self, f: str, value: Any) -> str:
        text = str(value).strip()
        if len(text) > self.params.max_field_chars:
            text = text[: self.params.max_field_chars].rstrip() + " ..."
        return f"{self.label(f)}: {text}"

    def _block(self, record: dict[str, Any], with_outputs: bool) -> str:
        lines = [self._field(f, record.get(f, "")) for f in self.inputs]
        if with_outputs:
            lines += [self._field(f, record.get(f, "")) for f in self.outputs]
        return "\n".join(lines)

    def _reply(self, record: dict[str, Any]) -> str:
        """A demonstration's assistant turn: its outputs as `Label: value` lines, as in the
        completion document (parse reads a reply either way). The label matters to small
        models: SmolLM2 135M named 8 of 10 capitals after "Capital: Paris" turns, 2 of 10
        after bare "Paris" ones (tests/lm/test_served_lm.py's questions)."""
        return "\n".join(self._field(f, record.get(f, "")) for f in self.outputs)

    def render(self, inputs: dict[str, Any], instruction: str, demos: list[dict],
               style: PromptStyle | None = None) -> dict[str, Any]:
        """The prompt (completion) or messages (chat) for one call, as LMRequest kwargs;
        `style` None: the style of the component's own model (`prompt_style`)."""
        style = style or self.prompt_style(self.model_of({}))
        query = self._block(inputs, False)
        if style == "completion":
            demo_text = "\n\n".join(self._block(d, True) for d in demos)
            parts = [p for p in (instruction.strip(), demo_text, query) if p]
            return {"prompt": "\n\n".join(parts) + f"\n{self.label(self.outputs[0])}:"}
        if len(self.outputs) == 1:
            ask = f"Respond with only the {self.label(self.outputs[0]).lower()}."
        else:
            ask = "Respond with one line per field:\n" + "\n".join(
                f"{self.label(f)}: ..." for f in self.outputs)
        turns: list[tuple[str, str]] = [("system", instruction.strip() or self.description)]
        for d in demos:
            turns += [("user", self._block(d, False) + "\n\n" + ask), ("assistant", self._reply(d))]
        return {"messages": (*turns, ("user", query + "\n\n" + ask))}

    # ---------------------------------------------------------------- parse

    def parse(self, text: str) -> dict[str, str]:
        """Output fields from a completion; see module doc for the fallback."""
        text = text.strip()
        if len(self.outputs) == 1:
            return {self.outputs[0]: _strip_label(text, self.label(self.outputs[0]), self.outputs[0])}
        found: dict[str, str] = {}
        # In completion style the first label is already in the prompt: its value leads.
        pattern = "|".join(re.escape(self.label(f)) + "|" + re.escape(f) for f in self.outputs)
        chunks = re.split(rf"^\s*({pattern})\s*:", text, flags=re.IGNORECASE | re.MULTILINE)
        lead = chunks[0].strip()
        if lead:
            found[self.outputs[0]] = lead
        for label, value in zip(chunks[1::2], chunks[2::2], strict=False):
            f = next(o for o in self.outputs if label.lower() in (self.label(o).lower(), o.lower()))
            found.setdefault(f, value.strip())
        if not found:
            found[self.outputs[0]] = text
        return {f: found.get(f, "") for f in self.outputs}

    # ---------------------------------------------------------------- forward

    def request_settings(self, values: dict[str, Any], call: Call) -> dict[str, Any]:
        """Model, sampling and stop settings of one call (LMRequest keyword arguments)."""
        model = self.model_of(values)
        if not model:
            raise ValueError(f"component '{self.name}' has no model: set lm.model or params.model")
        hyper = dict(self.values_of(values, "hyperparameter"))
        temperature = call.temperature if call.temperature is not None else hyper.get(
            "temperature", self.params.temperature if self.params.temperature is not None
            else self.default_temperature)
        max_tokens = int(hyper.get("max_tokens", self.params.max_tokens or self.default_max_tokens))
        stop = self.params.stop
        if stop is None:
            stop = ["\n"] if len(self.outputs) == 1 else ["\n\n"]
        settings = {"model": model, "temperature": float(temperature), "max_tokens": max_tokens,
                    "stop": tuple(stop), "seed": call.seed, "sample_index": call.sample_index}
        if self.weights_model():  # the adapted model (model_of), with the current adapter
            adapter = next((v for _, v in self.values_of(values, "weights") if v), None)
            if adapter is not None:
                from optimas_cli.weights.adapter import adapter_gguf  # torch-free

                settings["adapter"] = str(adapter_gguf(adapter))
        return settings

    def request(self, inputs: dict[str, Any], values: dict[str, Any], call: Call) -> LMRequest:
        """The model request of one call: what `forward` sends (weights training reuses it)."""
        prompt = dict(self.values_of(values, "prompt"))
        prompt_value = next(iter(prompt.values()), None) or {}
        instruction = prompt_value.get("instruction", self.params.instruction)
        demos = prompt_value.get("demos", self.params.demos if not prompt else [])
        settings = self.request_settings(values, call)
        return LMRequest(**settings, **self.render(inputs, instruction, demos,
                                                   self.prompt_style(settings["model"])))

    def forward(self, inputs: dict[str, Any], values: dict[str, Any], call: Call) -> dict[str, Any]:
        return self.parse(call.complete(self.request(inputs, values, call)).text)


def _strip_label(text: str, label: str, name: str) -> str:
    for prefix in (label, name):
        if text.lower().startswith(prefix.lower() + ":"):
            return text[len(prefix) + 1:].strip()
    return text
