"""TextGrad baseline (Yuksekgonul et al. 2024): textual gradients on the llm components' instructions.

Runs the real `textgrad` package (0.1.8): each optimized instruction is a
`tg.Variable`; textgrad's own backward functions, loss and optimizer produce the
update; only the model calls go through our LMClient (cache, accounting,
lm.max_calls / lm.max_cost_usd budgets), via `OptimasEngine`, an `EngineLM`.

One step (iteration):
  1. forward: run the system on a seeded minibatch of train examples with the
     accepted state (our System, so prompts are exactly those evaluated);
  2. graph: rebuild each run as a textgrad graph: an llm step is a response
     Variable whose predecessors are its instruction Variable and its input
     fields, with textgrad's `LLMCall.backward` over the prompt it really saw; a
     non-LLM step (retriever, python) is a `StringBasedFunction`;
  3. loss: `tg.TextLoss` per example, its evaluation prompt built from the
     system inputs, the gold answer and the metric's score; `tg.sum` of them;
  4. `backward()` then `tg.TGD.step()` per instruction;
  5. the new instructions are scored end to end on val and accepted only if val
     passes `optimizer.accept_rule` against the accepted state (else reverted).

TGD needs its optimizer model to answer inside <IMPROVED_VARIABLE>...</IMPROVED_VARIABLE>.
A reply without the tags, with an opening tag but no closing one, whose parsed value
is a piece of TGD's own instructions (small models parrot them), or empty
(textgrad_replies.py), and a failed model call, leave that instruction unchanged:
the step is recorded in history.jsonl with the reply and what textgrad parsed from
it. When no step of the run yields a usable update the run fails with
TextGradFailure, which gives the counts. Nothing replaces textgrad's own update.
Full traces (losses, feedback, optimizer replies) go to textgrad/steps.jsonl.

The embedded models cannot drive TGD (textgrad 0.1.8, measured on CPU):
  - TGD prompts for the four HotpotQA instructions with a useful feedback each:
    smollm2-135m-instruct put no <IMPROVED_VARIABLE> in 0 of 6 replies (4 greedy, 2 at
    T=0.8); gemma3-270m parroted TGD's system prompt in 4 of 4 greedy replies, and
    textgrad's own parser took a fragment of it as the new instruction in 3 of them
    ("tags, and nothing else. The text you send between the tags",
    "{the improved variable}", ...); usable: 0 of 10.
  - tests/words.yaml end to end with smollm2 for every call: 2 of 2 TGD replies without
    tags; its backward "feedback" was one sentence repeated ("The conversation is part
    of a larger system. ..."). Use an instruction-following model as engine_model.

options:
  steps: int                    textgrad steps (iterations), default 4
  batch_size: int               train examples per textual gradient, default 3
  engine_model: str | null      the model for loss, backward and TGD (null: lm.model)
  max_tokens: int               per textgrad call, default 256
  temperature: float            of textgrad calls, default 0.0
  components: [name] | null     instructions to optimize (null: every llm prompt variable)
  constraints: [str]            TGD's natural-language constraints on the new instruction
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from optimas_cli.errors import ConfigError
from optimas_cli.graph import State
from optimas_cli.layout import TEXTGRAD_LOG, TEXTGRAD_STATS, TEXTGRAD_STEPS
from optimas_cli.lm.base import LMError, LMRequest
from optimas_cli.methods.base import Context, Method, Options
from optimas_cli.methods.textgrad_replies import (
    FAILURES,
    NO_TAGS,
    TAGS,
    no_usable_update,
    reply_problem,
    tgd_counts,
)
from optimas_cli.methods.trial import (
    Trial,
    check_components,
    variables_of,
    with_values,
)
from optimas_cli.run_dir import RunDir
from optimas_cli.stages.evaluate import EvalOptions, evaluate_examples

# textgrad opens a log file under $TEXTGRAD_LOG_DIR (default ./logs/) when imported;
# keep it out of the working directory. Each run logs to RUN_DIR/textgrad/ instead.
os.environ.setdefault("TEXTGRAD_LOG_DIR", str(Path(tempfile.gettempdir()) / "optimas-textgrad"))
# textgrad imports litellm, which would otherwise fetch its cost map (and retry) offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
try:
    import textgrad as tg
    from textgrad.autograd.function import BackwardContext
    from textgrad.autograd.llm_ops import LLMCall
    from textgrad.autograd.string_based_ops import StringBasedFunction
    from textgrad.config import SingletonBackwardEngine
    from textgrad.engine import EngineLM
    from textgrad.optimizer import optimizer_prompts as op
except ImportError as e:  # pragma: no cover - the package is a dependency
    raise ImportError("the 'textgrad' baseline needs the textgrad package: "
                      "pip install textgrad==0.1.8") from e

log = logging.getLogger("optimas.baselines.textgrad")


class TextGradOptions(Options):
    """optimizer.options of the textgrad baseline (module doc)."""

    steps: int = Field(4, ge=1)
    batch_size: int = Field(3, ge=1)
    engine_model: str | None = Field(None, min_length=1)
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    components: list[str] | None = None
    constraints: list[str] = []



LOSS_PROMPT = (
    "You evaluate the final output of a multi-step AI system ({system}). "
    "The system was given: {inputs}. The correct output is: {gold}. "
    "The metric scored the system's output {score:.2f} (1.0 is perfect, 0.0 is wrong). "
    "Compare the output with the correct output and say concisely what is wrong, if anything."
)


def _tgd_template() -> str:
    """The fixed text of textgrad's TGD prompts (no variable, no feedback)."""
    tags = {"new_variable_start_tag": TAGS[0], "new_variable_end_tag": TAGS[1]}
    return "\n".join([op.OPTIMIZER_SYSTEM_PROMPT.format(**tags), op.TGD_PROMPT_SUFFIX.format(**tags),
                      op.TGD_PROMPT_PREFIX, op.GLOSSARY_TEXT])


class OptimasEngine(EngineLM):
    """textgrad's engine interface over our LM: every call is an LMClient.complete.

    `phase` tags the usage (textgrad/loss, textgrad/backward, textgrad/optimizer).
    """

    def __init__(self, lm, model: str, *, max_tokens: int = 256, temperature: float = 0.0,
                 seed: int = 0):
        self.lm = lm
        self.model_string = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed
        self.phase = "textgrad"
        self.calls: Counter[str] = Counter()
        self.last_text = ""

    def generate(self, content, system_prompt: str | None = None, **kwargs: Any) -> str:
        if not isinstance(content, str):
            raise TypeError("the textgrad baseline sends text only; got multimodal content")
        system = self.system_prompt if system_prompt is None else system_prompt
        messages = (("system", system), ("user", content)) if system else (("user", content),)
        request = LMRequest(model=self.model_string, messages=messages,
                            temperature=self.temperature, max_tokens=self.max_tokens,
                            seed=self.seed)
        self.calls[self.phase] += 1
        self.last_text = self.lm.complete(request, component=f"textgrad/{self.phase}").text
        return self.last_text

    def __call__(self, content, system_prompt: str | None = None, **kwargs: Any) -> str:
        return self.generate(content, system_prompt=system_prompt, **kwargs)


# ------------------------------------------------------------------ the graph


def _output_text(comp, outputs: dict[str, Any]) -> str:
    if len(comp.outputs) == 1:
        return str(outputs.get(comp.outputs[0], ""))
    label = getattr(comp, "label", lambda f: f)
    return "\n".join(f"{label(f)}: {outputs.get(f, '')}" for f in comp.outputs)


def _gold(target: Any) -> str:
    if isinstance(target, dict) and len(target) == 1:
        return str(next(iter(target.values())))
    return json.dumps(target, ensure_ascii=False, default=str)


def build_loss(rt, result: dict[str, Any], params: dict[str, tg.Variable], engine: OptimasEngine,
               llm_call: LLMCall) -> tg.Variable | None:
    """One executed example as a textgrad graph ending in its TextLoss; None if the run failed."""
    system = rt.system
    trace = result["trace"]
    if trace["error"]:
        return None
    fields: dict[str, tg.Variable] = {
        f: tg.Variable(str(trace["fields"][f]), requires_grad=False,
                       role_description=f"input '{f}' of the system")
        for f in system.cfg.inputs}
    for step in trace["steps"]:
        name = step["component"]
        comp, cfg = system.components[name], system.cfg.components[name]
        inputs = {f: fields[f] for f in comp.inputs}
        role = f"output of the '{name}' step ({cfg.description})"
        out = _output_text(comp, step["outputs"])
        if hasattr(comp, "render"):  # an llm component: backward through the call it made
            pvar = next((v for v, var in cfg.variables.items() if var.type == "prompt"), None)
            value = step["variables"].get(pvar) or {}
            instruction = value.get("instruction", getattr(comp.params, "instruction", ""))
            style = comp.prompt_style(comp.model_of(step["variables"]))
            rendered = comp.render(step["inputs"], instruction, value.get("demos", []), style)
            if "prompt" in rendered:  # completion style: the instruction leads the prompt
                system_text, prompt_text = "", rendered["prompt"]
            else:  # chat: the system message, then the turns (demonstrations, the input)
                (_, system_text), *turns = rendered["messages"]
                prompt_text = "\n\n".join(text for _, text in turns)
            preds = ([params[name]] if name in params else []) + list(inputs.values())
            response = tg.Variable(out, predecessors=preds, role_description=role)
            response.set_grad_fn(BackwardContext(backward_fn=llm_call.backward, response=response,
                                                 prompt=prompt_text, system_prompt=system_text))
        else:  # retriever, python: textgrad's string-based function
            fn = StringBasedFunction(lambda _out=out, **_: _out, function_purpose=cfg.description)
            response = fn(inputs=inputs, response_role_description=role)
        for f in comp.outputs:
            fields[f] = response
    final = fields.get(system.cfg.final_output)
    if final is None:
        return None
    given = "; ".join(f"{f}: {trace['fields'][f]}" for f in system.cfg.inputs)
    prompt = LOSS_PROMPT.format(system=system.cfg.description or system.cfg.name, inputs=given,
                                gold=_gold(result["target"]), score=result["score"])
    return tg.TextLoss(prompt, engine=engine)(final)


@contextmanager
def _textgrad_logs(run_dir: RunDir):
    """textgrad's logger writes to RUN_DIR/textgrad/textgrad.jsonl during this run only."""
    logger = logging.getLogger("textgrad")
    saved = (list(logger.handlers), logger.propagate)
    handler = logging.FileHandler(run_dir.file(TEXTGRAD_LOG), encoding="utf-8")
    handler.setFormatter(tg.CustomJsonFormatter())
    for h in saved[0]:
        logger.removeHandler(h)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        for h in saved[0]:
            logger.addHandler(h)
        logger.propagate = saved[1]


@contextmanager
def _no_global_engine():
    """Variable.backward(engine) refuses to run while a global backward engine is set."""
    single = SingletonBackwardEngine()
    saved, single.engine = single.engine, None
    try:
        yield
    finally:
        single.engine = saved


# ------------------------------------------------------------------ the baseline


class TextGradMethod(Method):
    """TextGrad's textual gradients on every prompt variable."""

    name = "textgrad"
    Options = TextGradOptions

    def optimize(self, ctx: Context) -> State:
        rt, run_dir, initial, opts = ctx.rt, ctx.run_dir, ctx.initial, ctx.options
        run = rt.composed.run
        prompts = variables_of(rt, ("prompt",))
        eligible = list(dict.fromkeys(c for c, _ in prompts))
        if not eligible:
            raise ConfigError("optimizer.name: the 'textgrad' baseline optimizes instructions, and no "
                              "component of this system has a `prompt` variable")
        names = check_components(rt, opts.components, eligible, "a prompt variable")
        pvars = {c: v for c, v in prompts if c in names}
        if not rt.splits["train"]:
            raise ConfigError("data.train_size: the 'textgrad' baseline computes textual gradients on "
                              "train examples; set data.train_size > 0")
        engine = OptimasEngine(rt.lm, opts.engine_model or run.lm.model,
                               max_tokens=opts.max_tokens, temperature=opts.temperature,
                               seed=run.seed)
        trial = Trial(rt, run_dir, "textgrad")
        with _textgrad_logs(run_dir), _no_global_engine():
            trial.start(initial, replay=False)
            params = {c: tg.Variable(trial.state[c][v]["instruction"], requires_grad=True,
                                     role_description=(f"instruction of the '{c}' step of a compound AI "
                                                       f"system ({rt.system.cfg.components[c].description})"
                                                       "; it leads the step's prompt"))
                      for c, v in pvars.items()}
            optimizers = {c: tg.TGD(parameters=[p], engine=engine, constraints=opts.constraints)
                          for c, p in params.items()}
            batch_cost = min(opts.batch_size, len(rt.splits["train"]))
            while trial.iteration <= opts.steps and trial.can_afford(batch_cost):
                _step(rt, run_dir, trial, engine, params, optimizers, pvars, opts)
            _summarize(run_dir, trial, engine)
        return trial.state


def _step(rt, run_dir, trial: Trial, engine: OptimasEngine, params, optimizers, pvars,
          opts: TextGradOptions) -> None:
    it, t0 = trial.iteration, time.perf_counter()
    for c, p in params.items():  # start from the accepted instructions
        p.set_value(trial.state[c][pvars[c]]["instruction"])
        optimizers[c].zero_grad()
    rng = random.Random(f"{rt.composed.run.seed}:textgrad:{it}")
    train = rt.splits["train"]
    batch = rng.sample(train, min(opts.batch_size, len(train)))
    detail: dict[str, Any] = {"iteration": it, "batch": [ex.id for ex in batch]}
    try:
        results = evaluate_examples(rt.system, trial.state, batch, rt.metric,
                                    EvalOptions(workers=rt.composed.run.eval.workers,
                                                label=f"textgrad {it} batch", show_progress=False))
        detail["batch_score"] = sum(r["score"] for r in results) / len(results)
        llm_call = LLMCall(engine)
        engine.phase = "loss"
        losses = [loss for r in results
                  if (loss := build_loss(rt, r, params, engine, llm_call)) is not None]
        detail["losses"] = [v.value for v in losses]
        if not losses:
            raise _NoCandidate("every minibatch run failed; no loss to back-propagate")
        total = tg.sum(losses)
        engine.phase = "backward"
        total.backward(engine)
        detail["feedback"] = {c: p.get_gradient_text() for c, p in params.items()}
        engine.phase = "optimizer"
        updates: dict[str, Any] = {}
        for c, p in params.items():
            if not p.gradients:
                updates[c] = {"status": "no feedback"}
                continue
            before = p.value
            try:
                optimizers[c].step()
            except IndexError:
                updates[c] = {"status": NO_TAGS, "reply": engine.last_text}
                continue
            problem = reply_problem(engine.last_text, p.value, _tgd_template())
            if problem:
                updates[c] = {"status": problem, "parsed_by_textgrad": p.value,
                              "reply": engine.last_text}
                p.set_value(before)
                continue
            updates[c] = {"status": "same as before" if p.value == before else "updated",
                          "instruction": p.value}
        detail["updates"] = updates
    except _NoCandidate as e:
        detail["error"] = str(e)
        updates = {}
    except LMError as e:
        detail["error"] = f"model call failed: {e}"
        updates = {}
    detail["lm_calls_so_far"] = dict(engine.calls)
    run_dir.append_jsonl(TEXTGRAD_STEPS, detail)
    changes = {(c, pvars[c]): {**trial.state[c][pvars[c]], "instruction": u["instruction"]}
               for c, u in updates.items() if u.get("status") == "updated"}
    summary = {"batch_score": detail.get("batch_score"),
               "updates": {c: {k: (v[:500] if isinstance(v, str) else v) for k, v in u.items()}
                           for c, u in updates.items()},
               **({"error": detail["error"]} if "error" in detail else {})}
    if not changes:
        trial.no_candidate("all", seconds=time.perf_counter() - t0, textgrad=summary)
        return
    component = next(iter(changes))[0] if len(changes) == 1 else "all"
    trial.try_state(with_values(trial.state, changes), component, textgrad=summary)


class _NoCandidate(Exception):
    pass


def _summarize(run_dir: RunDir, trial: Trial, engine: OptimasEngine) -> None:
    """textgrad/stats.json; TextGradFailure when no step produced a usable instruction."""
    steps = [r for r in trial.records if r.get("kind") == "iteration"]
    n = tgd_counts(steps)
    result = {"engine_model": engine.model_string, "steps": len(steps),
              "candidates": sum(1 for r in steps if r["changed"]),
              "accepted": sum(1 for r in steps if r["accepted"]),
              **{k: n[k] for k in ("tgd_calls", "parsed", *FAILURES.values(), "lm_errors")},
              "lm_calls_this_process": dict(engine.calls), "stopped": trial.stopped}
    run_dir.write_json(TEXTGRAD_STATS, result)
    errors = [r["textgrad"]["error"] for r in steps if r.get("textgrad", {}).get("error")]
    failure = no_usable_update(n, engine.model_string, errors, str(run_dir.path))
    if failure is not None:
        raise failure
