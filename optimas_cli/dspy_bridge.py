"""DSPy on top of Optimas' LM layer and system graph.

Three pieces, used by the DSPy prompt optimizer (`optimizers/dspy_prompt.py`) and
the MIPROv2 / GEPA baselines (`baselines/mipro.py`, `baselines/gepa.py`):

OptimasLM
    A `dspy.BaseLM` whose every call is an `LMRequest` to our LM (LMClient), so
    DSPy calls share our response cache, usage accounting (tagged
    ``dspy/<component>``, ``dspy/proposer``, ...) and budgets (lm.max_calls,
    lm.max_cost_usd). Nothing is configured globally: callers pass it to
    optimizers or use ``dspy.context(lm=...)``. DSPy's own cache is off for it
    (a legacy BaseLM never uses it), so there is exactly one cache.

component_predict / prompt_value
    One of our `llm` components as a `dspy.Predict` (signature: the component's
    input and output fields, instructions: its prompt variable's instruction,
    demos: its demonstrations) and back (an optimized Predict -> our prompt
    value {"instruction", "demos"}).

SystemProgram
    A whole System as a `dspy.Module` with one named predictor per optimizable
    llm component; `forward` runs the graph in order, llm components through
    their predictors and every other component (retriever, python) through
    `System.run_step`, so DSPy optimizers see (and trace) the named predictors.

How a predictor's call is rendered is the `adapter` choice:

``"optimas"`` (ComponentAdapter)
    DSPy's Adapter extension point rendering exactly as the component itself
    does (completion-style few-shot document or chat, same labels, stop and
    token limits) and parsing with the component's parser. DSPy's optimizers
    then score the very prompts the optimized system will send, the requests
    are byte-identical to `System.run`'s (shared cache entries), and small
    models that cannot emit DSPy's field markers still produce parseable text.
``"chat"`` / ``"json"``
    DSPy's stock ChatAdapter (``[[ ## field ## ]]`` markers, JSON fallback) or
    JSONAdapter. What DSPy optimizes is then a differently rendered prompt than
    the one the converted system runs.

Either way DSPy's own meta-prompts (instruction proposers, GEPA reflection) go
through DSPy's stock adapters; only the task predictors can use ComponentAdapter.

DSPy 3.4 deprecates the `forward()` plugin interface in favour of lm15 engines;
this module keeps it because only `forward()` receives `n` and `rollout_id`,
which map to distinct `sample_index` values (distinct cache entries) here.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import threading
import time
import uuid
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import dspy

from optimas_cli.graph import Call, State, Step, System, Trace
from optimas_cli.lm.base import LM, BudgetExceeded, LMRequest, LMResponse

log = logging.getLogger("optimas.dspy")
warnings.filterwarnings(
    "ignore", message=r"Implementing custom LMs through BaseLM\.forward", category=DeprecationWarning)

ADAPTERS = ("optimas", "chat", "json")
CHAT_OVERHEAD_TOKENS = 32  # "[[ ## field ## ]]" headers and "[[ ## completed ## ]]" around the value

# Request defaults of the component whose predictor is running (set by _PredictorStep).
_REQUEST: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "optimas_dspy_request", default=None)


class SystemRunBudgetExhausted(RuntimeError):
    """The system-run allowance of a DSPy optimizer is spent; the example is not run."""


class _AttrDict(dict):
    """An OpenAI-style response: readable by key (DSPy's `value()`) and by attribute."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class _Shared:
    """State every copy of one OptimasLM shares (DSPy copies LMs freely)."""

    budget_error: BudgetExceeded | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self


def _text(content: Any) -> str:
    """Message content as text (DSPy may send a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, dict) and p.get("type") == "text":
                parts.append(str(p.get("text", "")))
            elif isinstance(p, str):
                parts.append(p)
            else:
                raise ValueError(f"OptimasLM handles text messages only, got a {p.get('type')!r} part"
                                 if isinstance(p, dict) else f"unsupported message part {p!r}")
        return "".join(parts)
    return str(content)


def sample_index_of(rollout_id: Any, i: int) -> int:
    """A distinct sample_index per (rollout_id, sample): DSPy's cache-busting as distinct requests."""
    if rollout_id is None:
        return i
    base = rollout_id if isinstance(rollout_id, int) and rollout_id >= 0 else zlib.crc32(
        str(rollout_id).encode("utf-8"))
    return (base + 1) * 1000 + i


class OptimasLM(dspy.BaseLM):
    """A dspy.BaseLM calling our LM (see module doc).

    Args:
        lm: our LM (an LMClient; anything with `complete(request, component=)`).
        model: default model name (`local/...` or a litellm name).
        component: accounting tag of calls made outside any component (e.g. the
            proposer's); calls made by a component's predictor are tagged
            ``dspy/<component>``.
        temperature, max_tokens: defaults; None defers to the running
            component's settings, then to `fallback_*`.
    """

    def __init__(self, lm: LM, model: str, *, component: str = "dspy", temperature: float | None = None,
                 max_tokens: int | None = None, seed: int = 0, fallback_temperature: float = 0.0,
                 fallback_max_tokens: int = 256, **kwargs: Any):
        super().__init__(model=model, model_type="chat", temperature=temperature,
                         max_tokens=max_tokens, cache=False, num_retries=0, **kwargs)
        self.client = lm
        self.component = component
        self.seed = seed
        self.fallback_temperature = fallback_temperature
        self.fallback_max_tokens = fallback_max_tokens
        self._shared = _Shared()

    # DSPy deep-copies programs and settings; the client (locks, sqlite) is shared, never copied.
    def __deepcopy__(self, memo: dict) -> OptimasLM:
        return self.copy()

    def dump_state(self) -> dict[str, Any]:
        return {"model": self.model, "component": self.component,
                **{k: v for k, v in self.kwargs.items() if isinstance(v, (str, int, float, bool))}}

    @property
    def budget_error(self) -> BudgetExceeded | None:
        """The first BudgetExceeded any copy hit (DSPy swallows exceptions as failed examples)."""
        return self._shared.budget_error

    def raise_if_over_budget(self) -> None:
        if self._shared.budget_error is not None:
            raise self._shared.budget_error

    def requests(self, prompt: str | None = None, messages: list[dict] | None = None,
                 **kwargs: Any) -> list[LMRequest]:
        """The LMRequests one DSPy call maps to (one per distinct sample)."""
        merged = {**self.kwargs, **kwargs}
        ctx = _REQUEST.get() or {}
        if messages is None:
            messages = [{"role": "user", "content": prompt or ""}]
        msgs = tuple((str(m.get("role", "user")), _text(m.get("content"))) for m in messages)
        temperature = merged.get("temperature")
        if temperature is None:
            temperature = ctx.get("temperature", self.fallback_temperature)
        temperature = float(temperature)
        max_tokens = (merged.get("max_tokens") or merged.get("max_completion_tokens")
                      or ctx.get("max_tokens") or self.fallback_max_tokens)
        stop = merged.get("stop")
        stop = ctx.get("stop", ()) if stop is None else stop
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        n = int(merged.get("n") or 1)
        rollout_id = merged.get("rollout_id")
        completion = merged.get("optimas_completion")
        if completion is None:
            completion = ctx.get("completion")
        common: dict[str, Any] = {"model": ctx.get("model") or self.model, "temperature": temperature,
                                  "max_tokens": int(max_tokens), "stop": stop,
                                  "seed": int(ctx.get("seed", self.seed))}
        if completion and len(msgs) == 1 and msgs[0][0] == "user":
            common["prompt"] = msgs[0][1]  # the component's completion-style document
        else:
            common["messages"] = msgs
        first = int(ctx.get("sample_index", 0))
        if temperature == 0:  # greedy: every sample is the same request
            return [LMRequest(**common, sample_index=first)] * n
        if rollout_id is None:
            return [LMRequest(**common, sample_index=first + i) for i in range(n)]
        return [LMRequest(**common, sample_index=sample_index_of(rollout_id, i)) for i in range(n)]

    def forward(self, prompt: str | None = None, messages: list[dict] | None = None,
                **kwargs: Any) -> _AttrDict:
        ctx = _REQUEST.get() or {}
        tag = ctx.get("component") or self.component
        done: dict[LMRequest, LMResponse] = {}
        responses = []
        requests = self.requests(prompt, messages, **kwargs)
        for req in requests:
            if req not in done:
                try:
                    done[req] = self.client.complete(req, component=tag)
                except BudgetExceeded as e:
                    with self._shared.lock:
                        self._shared.budget_error = self._shared.budget_error or e
                    raise
            responses.append(done[req])
        distinct = list(done.values())
        choices = [{"index": i, "finish_reason": r.extra.get("finish_reason") or "stop",
                    "message": _AttrDict(role="assistant", content=r.text)}
                   for i, r in enumerate(responses)]
        pt = sum(r.prompt_tokens for r in distinct)
        ct = sum(r.completion_tokens for r in distinct)
        return _AttrDict(id=f"optimas-{uuid.uuid4().hex[:12]}", object="chat.completion",
                         created=int(time.time()), model=requests[0].model,
                         choices=[_AttrDict(c) for c in choices],
                         usage={"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
                         cache_hit=all(r.cached for r in distinct))

    async def aforward(self, prompt: str | None = None, messages: list[dict] | None = None,
                       **kwargs: Any) -> _AttrDict:
        import asyncio

        return await asyncio.to_thread(self.forward, prompt, messages, **kwargs)


@contextmanager
def request_defaults(**values: Any) -> Iterator[None]:
    """Within the block, OptimasLM calls default to these request settings (see _PredictorStep)."""
    token = _REQUEST.set(values)
    try:
        yield
    finally:
        _REQUEST.reset(token)


# ------------------------------------------------------------------ components <-> predictors


def llm_component(system: System, name: str) -> Any:
    """The built llm component `name`; ValueError if it is not one."""
    from optimas_cli.components.llm import LLMComponent

    comp = system.components.get(name)
    if not isinstance(comp, LLMComponent):
        raise ValueError(f"component '{name}' is not an llm component "
                         f"({type(comp).__name__ if comp is not None else 'no such component'})")
    return comp


def prompt_variable(system: System, name: str) -> str | None:
    """Name of component `name`'s prompt variable, or None."""
    return next((v for v, var in system.cfg.components[name].variables.items() if var.type == "prompt"),
                None)


def prompt_components(system: System) -> list[str]:
    """llm components with a prompt variable, in run order: what DSPy optimizes."""
    from optimas_cli.components.llm import LLMComponent

    return [n for n in system.order
            if isinstance(system.components[n], LLMComponent) and prompt_variable(system, n)]


def component_signature(comp: Any, instruction: str) -> type[dspy.Signature]:
    """The component's fields as a DSPy signature (labels as field descriptions)."""
    fields: dict[str, Any] = {}
    for f in comp.inputs:
        fields[f] = (str, dspy.InputField(desc=comp.label(f)))
    for f in comp.outputs:
        fields[f] = (str, dspy.OutputField(desc=comp.label(f)))
    return dspy.Signature(fields, instruction or comp.description)


def component_predict(comp: Any, value: dict[str, Any]) -> dspy.Predict:
    """A dspy.Predict of an llm component under prompt value {"instruction", "demos"}."""
    pred = dspy.Predict(component_signature(comp, value.get("instruction") or ""))
    pred.demos = [dspy.Example(**d) for d in value.get("demos") or []]
    return pred


def demo_dict(demo: Any, fields: list[str]) -> dict[str, Any] | None:
    """A DSPy demo (Example or dict) as our demo dict, or None if it lacks a field."""
    d = demo.toDict() if hasattr(demo, "toDict") else dict(demo)
    if any(d.get(f) is None for f in fields):
        return None
    return {f: d[f] if isinstance(d[f], (str, int, float, bool)) else str(d[f]) for f in fields}


def prompt_value(pred: dspy.Predict, comp: Any, max_demos: int | None = None) -> dict[str, Any]:
    """Our prompt value of an (optimized) predictor: its instruction and complete demos.

    Demos missing one of the component's fields (e.g. DSPy's labeled demos of
    a system-level example) are dropped; duplicates are dropped; at most
    `max_demos` are kept.
    """
    fields = list(comp.inputs) + list(comp.outputs)
    demos: list[dict[str, Any]] = []
    for d in pred.demos:
        dd = demo_dict(d, fields)
        if dd is not None and dd not in demos:
            demos.append(dd)
    if max_demos is not None:
        demos = demos[:max_demos]
    return {"instruction": pred.signature.instructions, "demos": demos}


# ------------------------------------------------------------------ adapter


def _adapter_message_call(lm: Any, messages: list[dict]) -> Any:
    """DSPy 3.4's marker for adapter-owned messages= calls (no deprecation warning), if present."""
    try:
        from dspy.clients._deprecation import adapter_message_call
    except ImportError:
        return nullcontext()
    return adapter_message_call(lm, messages)


class ComponentAdapter(dspy.Adapter):
    """Renders and parses a predictor's call exactly as its llm component does (module doc)."""

    def __init__(self, comp: Any):
        super().__init__()
        self.comp = comp

    def format(self, signature: type[dspy.Signature], demos: list[Any],
               inputs: dict[str, Any]) -> list[dict[str, Any]]:
        fields = list(self.comp.inputs) + list(self.comp.outputs)
        complete = [d for d in (demo_dict(x, fields) for x in demos) if d is not None]
        rendered = self.comp.render({f: inputs.get(f, "") for f in self.comp.inputs},
                                    signature.instructions, complete)
        if "prompt" in rendered:
            return [{"role": "user", "content": rendered["prompt"]}]
        return [{"role": r, "content": c} for r, c in rendered["messages"]]

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        return self.comp.parse(completion or "")

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[dspy.Signature],
                 demos: list[Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        messages = self.format(signature, demos, inputs)
        with _adapter_message_call(lm, messages):
            outputs = lm(messages=messages, **lm_kwargs)
        texts = [o.get("text") if isinstance(o, dict) else o for o in outputs]
        return [self.parse(signature, t or "") for t in texts]

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[dspy.Signature],
                    demos: list[Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        return self(lm, lm_kwargs, signature, demos, inputs)


def make_adapter(kind: str, comp: Any) -> dspy.Adapter:
    if kind == "optimas":
        return ComponentAdapter(comp)
    if kind == "chat":
        return dspy.ChatAdapter()
    if kind == "json":
        return dspy.JSONAdapter()
    raise ValueError(f"unknown DSPy adapter {kind!r}; use one of {list(ADAPTERS)}")


class MetaCompletionAdapter(dspy.Adapter):
    """DSPy's meta-prompts (instruction proposers, reflection) as a completion document.

    DSPy's ChatAdapter/JSONAdapter ask for ``[[ ## field ## ]]`` markers or a
    JSON object, which the embedded 135M/270M models do not produce (see
    tests/test_dspy.py and the report in configs/optimizer/mipro.yaml). This
    adapter renders the same signature -- DSPy's instructions, input fields and
    values -- as a plain document that ends with the first output field's
    label, sends it as a raw completion, and reads the continuation up to the
    next field label or blank line. The optimizer's logic and the meta-prompt's
    content stay DSPy's; only the wire format changes. Output fields after the
    first are read from "Label:" lines when present, else left empty.
    """

    def _label(self, name: str, field_info: Any) -> str:
        prefix = (field_info.json_schema_extra or {}).get("prefix") or name.replace("_", " ").capitalize()
        return prefix.rstrip().rstrip(":")

    def format(self, signature: type[dspy.Signature], demos: list[Any],
               inputs: dict[str, Any]) -> list[dict[str, Any]]:
        from dspy.adapters.utils import format_field_value

        # No "Label: description" lines for outputs: small models copy them as the answer.
        lines = [signature.instructions.strip(), ""]
        outs = list(signature.output_fields.items())
        for name, f in signature.input_fields.items():
            if name in inputs:
                lines.append(f"{self._label(name, f)}: {format_field_value(f, inputs[name])}")
        lines += ["", f"{self._label(*outs[0])}:"]
        return [{"role": "user", "content": "\n".join(lines)}]

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        import re

        from dspy.adapters.utils import parse_value
        from dspy.utils.exceptions import AdapterParseError

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

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[dspy.Signature],
                 demos: list[Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        messages = self.format(signature, demos, inputs)
        # No "\n\n" stop: small models often open with a blank line (an empty answer); the
        # value is cut at its first blank line by parse() instead.
        kwargs = {**lm_kwargs, "optimas_completion": True}
        with _adapter_message_call(lm, messages):
            outputs = lm(messages=messages, **kwargs)
        texts = [o.get("text") if isinstance(o, dict) else o for o in outputs]
        return [self.parse(signature, t or "") for t in texts]

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[dspy.Signature],
                    demos: list[Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        return self(lm, lm_kwargs, signature, demos, inputs)


PROPOSER_ADAPTERS = ("auto", "dspy", "completion")


def proposer_adapter(kind: str, model: str) -> dspy.Adapter | None:
    """The adapter of DSPy's meta-prompts; None means DSPy's own choice (kind "dspy").

    dspy: what DSPy uses by itself (ChatAdapter with JSON fallback; GEPA's
    proposer: JSONAdapter). completion: MetaCompletionAdapter. auto: completion
    for the embedded `local/` models (they cannot produce DSPy's formats, see
    MetaCompletionAdapter), dspy for API models.
    """
    from optimas_cli.lm.base import LOCAL_PREFIX

    if kind == "auto":
        kind = "completion" if model.startswith(LOCAL_PREFIX) else "dspy"
    if kind == "completion":
        return MetaCompletionAdapter()
    if kind == "dspy":
        return None
    raise ValueError(f"unknown proposer adapter {kind!r}; use one of {list(PROPOSER_ADAPTERS)}")


def run_predictor(comp: Any, pred: dspy.Predict, inputs: dict[str, Any], values: dict[str, Any],
                  call: Call, adapter: str) -> dict[str, Any]:
    """One call of component `comp` through its DSPy predictor; its output fields."""
    settings = comp.request_settings(values, call)
    settings["component"] = f"dspy/{comp.name}"
    if adapter == "optimas":
        settings["completion"] = comp.params.style == "completion"
    else:  # DSPy's formats need room for their markers and are multi-line
        settings["max_tokens"] += CHAT_OVERHEAD_TOKENS
        settings["stop"] = ()
    with request_defaults(**settings), dspy.context(adapter=make_adapter(adapter, comp)):
        out = pred(**inputs)
    return {o: out.get(o) if out.get(o) is not None else "" for o in comp.outputs}


# ------------------------------------------------------------------ a system as a dspy.Module


class KeepRef:
    """Holds a non-copyable object (System, counters) through DSPy's deep copies."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __deepcopy__(self, memo: dict) -> KeepRef:
        return self


class RunCounter:
    """System runs spent by DSPy, with an optional hard cap (shared by all program copies)."""

    def __init__(self, system: System, limit: int | None = None):
        self.system = system
        self.limit = limit
        self.used = 0
        self.refused = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                self.refused += 1
                raise SystemRunBudgetExhausted(
                    f"the optimizer's system-run allowance ({self.limit}) is spent")
            self.used += 1
        self.system.count_run()


class _PredictorStep:
    """An llm component whose forward goes through a predictor of a SystemProgram."""

    def __init__(self, comp: Any, program: SystemProgram):
        self.comp = comp
        self.program = program
        self.name, self.description = comp.name, comp.description
        self.inputs, self.outputs, self.variables = comp.inputs, comp.outputs, comp.variables

    def forward(self, inputs: dict[str, Any], values: dict[str, Any], call: Call) -> dict[str, Any]:
        return run_predictor(self.comp, getattr(self.program, self.name), inputs, values, call,
                             self.program.adapter)


class SystemProgram(dspy.Module):
    """A System as a dspy.Module: one predictor attribute per optimizable llm component.

    `state` supplies every non-prompt variable (retriever k, model choices, ...)
    and the initial prompts. `counter` caps and counts the system runs.
    """

    def __init__(self, system: System, state: State, *, adapter: str = "optimas",
                 components: list[str] | None = None, counter: RunCounter | None = None):
        super().__init__()
        if adapter not in ADAPTERS:
            raise ValueError(f"unknown DSPy adapter {adapter!r}; use one of {list(ADAPTERS)}")
        self._system = KeepRef(system)
        self._counter = KeepRef(counter or RunCounter(system))
        self.adapter = adapter
        self.state = copy.deepcopy(state)
        self.prompt_components = components if components is not None else prompt_components(system)
        for name in self.prompt_components:
            if name.startswith("_") or hasattr(dspy.Module, name) or name in (
                    "state", "adapter", "prompt_components"):
                raise ValueError(f"component name '{name}' clashes with a dspy.Module attribute; "
                                 "rename the component to optimize it with DSPy")
            vname = prompt_variable(system, name)
            setattr(self, name, component_predict(llm_component(system, name), state[name][vname]))

    @property
    def system(self) -> System:
        return self._system.obj

    @property
    def counter(self) -> RunCounter:
        return self._counter.obj

    def to_state(self, max_demos: dict[str, int] | None = None) -> State:
        """Our state: `self.state` with each predictor's prompt value in its prompt variable."""
        out = copy.deepcopy(self.state)
        for name in self.prompt_components:
            vname = prompt_variable(self.system, name)
            limit = (max_demos or {}).get(name, self.system.cfg.components[name].variables[vname].max_demos)
            out[name][vname] = prompt_value(getattr(self, name), llm_component(self.system, name), limit)
        return out

    def trace(self, **inputs: Any) -> Trace:
        """Run the graph once (llm components through the predictors)."""
        self.counter.take()
        system = self.system
        trace = Trace(fields=dict(inputs))
        for name in system.order:
            if name in self.prompt_components:
                step = _run_step(_PredictorStep(system.components[name], self), trace.fields,
                                 self.state.get(name, {}), system)
            else:
                step = system.run_step(name, trace.fields, self.state)
            trace.steps.append(step)
            if step.error:
                trace.error = f"{name}: {step.error}"
                break
            trace.fields.update(step.outputs)
        return trace

    def forward(self, **inputs: Any) -> dspy.Prediction:
        trace = self.trace(**inputs)
        if trace.error:
            raise RuntimeError(trace.error)
        return dspy.Prediction(**trace.fields)


def _run_step(step_comp: _PredictorStep, fields: dict[str, Any], values: dict[str, Any],
              system: System) -> Step:
    """System.run_step's contract (errors recorded, budgets raised) for a predictor step."""
    inputs = {k: fields[k] for k in step_comp.inputs}
    call = Call(lm=system.lm, component=step_comp.name)
    t0 = time.perf_counter()
    try:
        outputs, error = step_comp.forward(dict(inputs), dict(values), call), None
    except (BudgetExceeded, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - recorded like System.run_step does
        outputs, error = {}, f"{type(e).__name__}: {e}"
    return Step(component=step_comp.name, inputs=inputs, outputs=outputs, variables=dict(values),
                latency_s=time.perf_counter() - t0, usage=call.usage, error=error)


def task_lm(system: System, lm_config: Any, *, seed: int = 0) -> OptimasLM:
    """The OptimasLM that runs the system's predictors (component settings decide each call)."""
    return OptimasLM(system.lm, lm_config.model, component="dspy/task", seed=seed,
                     fallback_temperature=lm_config.temperature,
                     fallback_max_tokens=lm_config.max_tokens)


def helper_lm(lm: LM, model: str, *, component: str, temperature: float | None = None,
              max_tokens: int = 256, seed: int = 0) -> OptimasLM:
    """An OptimasLM for DSPy's own meta-prompts (instruction proposer, GEPA reflection)."""
    return OptimasLM(lm, model, component=component, temperature=temperature, max_tokens=max_tokens,
                     seed=seed, fallback_temperature=1.0 if temperature is None else temperature,
                     fallback_max_tokens=max_tokens)


# ------------------------------------------------------------------ errors


class DSPyOptimizerError(RuntimeError):
    """A DSPy optimizer failed; the message names the optimizer, the model and DSPy's error."""


def explain_failure(what: str, model: str, exc: BaseException,
                    remedy: str = "Use a stronger model for DSPy's meta-prompts, or the opro prompt "
                                  "optimizer.") -> DSPyOptimizerError:
    """An error saying DSPy itself failed (e.g. a model that cannot produce DSPy's output format)."""
    msg = f"{type(exc).__name__}: {exc}"
    if len(msg) > 800:
        msg = msg[:800] + " ..."
    hint = ""
    if "AdapterParseError" in type(exc).__name__ or "parse" in str(exc).lower()[:400]:
        hint = (f" The model {model!r} did not produce output DSPy's adapter could parse (the "
                "[[ ## field ## ]] markers / JSON of DSPy's own adapters, or any text at all); small "
                f"local models often cannot. {remedy}")
    return DSPyOptimizerError(f"{what} failed with model {model!r}: {msg}.{hint}")


def compile_within_budget(what: str, model: str, model_option: str, meta: Any, lms: list,
                          compile_fn: Any) -> Any:
    """Run a DSPy optimizer's compile; a spent LM budget wins over DSPy's own error.

    DSPy wraps whatever its LMs raise, so each LM re-raises its BudgetExceeded first;
    any other failure becomes a DSPyOptimizerError naming `optimizer.options.<model_option>`.
    """
    try:
        best = compile_fn()
    except Exception as e:  # noqa: BLE001 - DSPy's failure, reported as such
        for lm in lms:
            lm.raise_if_over_budget()
        raise explain_failure(what, model, e, remedy=(
            f"Set optimizer.options.{model_option} to a stronger model"
            + ("." if meta else ", or optimizer.options.proposer_adapter=completion."))) from e
    for lm in lms:
        lm.raise_if_over_budget()
    return best


# ------------------------------------------------------------------ end-to-end runs (baselines)


def parse_options(model_cls: type, options: dict[str, Any], baseline: str) -> Any:
    """optimizer.options validated by a pydantic model; ConfigError naming optimizer.options.<key>."""
    from pydantic import ValidationError

    from optimas_cli.config import ConfigError

    known = sorted(model_cls.model_fields)
    for key in options:
        if key not in model_cls.model_fields:
            raise ConfigError(f"optimizer.options.{key}: unknown option for the {baseline} baseline "
                              f"(known: {', '.join(known)})")
    try:
        return model_cls.model_validate(options)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"optimizer.options.{loc}: bad value {err.get('input')!r} for the "
                          f"{baseline} baseline ({err['msg']})") from None


def system_examples(examples: list[Any], system: System) -> list[dspy.Example]:
    """Our Examples as dspy.Examples: the system's inputs, plus `optimas_id` for the metric."""
    return [dspy.Example(**ex.inputs, optimas_id=ex.id).with_inputs(*system.cfg.inputs)
            for ex in examples]


def end_to_end_metric(rt) -> Any:
    """DSPy metric: rt.metric's score of the program's final fields on the gold example."""
    by_id = {ex.id: ex for split in rt.splits.values() for ex in split}

    def metric(gold: dspy.Example, pred: Any, trace: Any = None, *args: Any) -> float:
        fields = {k: pred[k] for k in pred.keys()}
        return float(rt.metric(by_id[gold.optimas_id], fields)["score"])

    metric.by_id = by_id
    return metric


def default_threads(rt) -> int:
    """Local models are served by one in-process pool: 1 thread; API models: eval.workers."""
    from optimas_cli.lm.base import LOCAL_PREFIX

    return 1 if rt.composed.run.lm.model.startswith(LOCAL_PREFIX) else rt.composed.run.eval.workers


def check_models(rt, *models: str | None) -> None:
    """Before any work: credentials of extra models (proposer, reflection) named in options."""
    from optimas_cli.lm import check_credentials

    names = [m for m in models if m]
    if names:
        check_credentials(names, rt.composed.run.lm)


class BaselineHistory:
    """history.jsonl in the Optimas loop's format, for a DSPy baseline.

    Record 0 is the initial system on validation; then one record per DSPy
    program re-evaluated on validation with our evaluator (the numbers
    `optimas evaluate` would give the converted state), accepted when it beats
    the best so far by more than optimizer.accept_threshold.

    Resume: once any candidate record exists DSPy is not rerun (a run killed
    while re-evaluating candidates keeps the best of those it logged); with
    only the initial record, DSPy runs again (its LM calls mostly cache hits).
    """

    def __init__(self, rt, run_dir, initial: State):
        self.rt, self.run_dir = rt, run_dir
        self.records = run_dir.read_jsonl("history.jsonl")
        self.best_state: State = initial
        self.best_val: float | None = None
        if self.records:
            last = self.records[-1]
            self.best_state = last["state"]
            from optimas_cli.stages.loop import accepted_val

            self.best_val = accepted_val(last)

    @property
    def finished(self) -> bool:
        """DSPy already ran to the end in an earlier process (resume: nothing to redo)."""
        return any(r.get("kind") == "iteration" for r in self.records)

    def _evaluate(self, state: State, label: str) -> dict[str, Any]:
        from optimas_cli.stages.loop import evaluate_val

        return evaluate_val(self.rt, state, label)

    def initial(self, state: State) -> float:
        if self.records:
            return self.best_val
        val = self._evaluate(state, "val initial")
        rec = {"iteration": 0, "kind": "initial",
               "val": {k: val[k] for k in ("mean", "std", "n", "failed") if k in val},
               "state": state, **self.rt.spent()}
        self._append(rec)
        self.best_val = val["mean"]
        return self.best_val

    def candidate(self, state: State, *, origin: str, dspy_val: float | None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Evaluate one candidate state on validation, accept or revert, append the record."""
        t0 = time.perf_counter()
        before = self.best_val
        changed_components = [n for n in state if state[n] != self.best_state.get(n)]
        changed = bool(changed_components)
        it = len(self.records)
        rec: dict[str, Any] = {
            "iteration": it, "kind": "iteration",
            "component": changed_components[0] if len(changed_components) == 1 else "all",
            "changed_components": changed_components, "origin": origin, "dspy_val": dspy_val,
            "val_before": before, "changed": changed, **(extra or {}),
        }
        if changed:
            after = self._evaluate(state, f"val candidate {it}")
            rec["val_after"] = after["mean"]
            rec["val_failed"] = after.get("failed", 0)
            rec["accepted"] = after["mean"] - before > self.rt.composed.run.optimizer.accept_threshold
        else:
            rec["val_after"], rec["accepted"] = before, False
        if rec["accepted"]:
            self.best_state, self.best_val = state, rec["val_after"]
        rec["state"] = self.best_state
        rec["seconds"] = time.perf_counter() - t0
        rec.update(self.rt.spent())
        self._append(rec)
        return rec

    def candidates(self, found: list[tuple[float | None, State]], origin: str,
                   extra: dict[str, Any]) -> None:
        """Evaluate DSPy's programs in order while the budget lasts; a no-op record if none is new."""
        budget = self.rt.composed.run.optimizer.budget_system_runs
        n_val = len(self.rt.splits["val"])
        for i, (dspy_val, state) in enumerate(found):
            if budget is not None and self.rt.system.runs + n_val > budget:
                log.warning("%s: budget_system_runs=%d reached; %d candidates left unevaluated",
                            origin, budget, len(found) - i)
                break
            self.candidate(state, origin=origin, dspy_val=dspy_val, extra=extra)
        if not any(r.get("kind") == "iteration" for r in self.records):
            # marks DSPy as done (a resume does not rerun it) and says why nothing changed
            self.candidate(self.best_state, origin=f"{origin}: no program differs from the initial one",
                           dspy_val=None, extra=extra)

    def _append(self, rec: dict[str, Any]) -> None:
        self.run_dir.append_jsonl("history.jsonl", rec)
        self.records.append(rec)


def distinct_states(programs: list[tuple[float | None, Any]], exclude: list[State],
                    limit: int) -> list[tuple[float | None, State]]:
    """Up to `limit` (DSPy score, state) of SystemPrograms, best DSPy score first, no repeats."""
    out: list[tuple[float | None, State]] = []
    seen = list(exclude)
    for score, prog in sorted(programs, key=lambda t: -1e9 if t[0] is None else t[0], reverse=True):
        state = prog.to_state()
        if state in seen:
            continue
        seen.append(state)
        out.append((score, state))
        if len(out) >= limit:
            break
    return out


def prepare_program(rt, run_dir, initial: State, name: str, adapter: str):
    """A DSPy baseline's program, train/val splits, history, and the runs already spent.

    The initial validation pass is counted as spent before it happens, so the budget
    plan leaves room for it.
    """
    from optimas_cli.config import ConfigError

    program = SystemProgram(rt.system, initial, adapter=adapter)
    if not program.prompt_components:
        raise ConfigError(f"optimizer.name={name}: the system has no llm component with a prompt "
                          "variable")
    train, val = rt.splits["train"], rt.splits["val"]
    if not train or not val:
        raise ConfigError(f"optimizer.name={name} needs data.train_size > 0 and data.val_size > 0")
    history = BaselineHistory(rt, run_dir, initial)
    spent = rt.system.runs + (0 if history.records else len(val))
    return program, train, val, history, spent
