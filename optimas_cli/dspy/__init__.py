"""DSPy on top of Optimas' LM layer and system graph.

Used by the DSPy prompt optimizer (`methods/optimas/updaters/dspy_prompt.py`) and the MIPROv2 /
GEPA baselines (`methods/dspy/mipro.py`, `methods/dspy/gepa.py`, their shared plumbing in
`methods/dspy/common.py`). One module per piece:

lm.py
    OptimasLM, a `dspy.BaseLM` whose every call is an `LMRequest` to our LM, so DSPy
    calls share our response cache, usage accounting and budgets. Nothing is
    configured globally: callers pass it to optimizers or use ``dspy.context(lm=...)``.
predict.py
    One of our `llm` components as a `dspy.Predict` and back (an optimized Predict ->
    our prompt value {"instruction", "demos"}).
adapters.py
    How a predictor's call is rendered and parsed. ``"optimas"`` (ComponentAdapter):
    exactly as the component itself does, so DSPy scores the very prompts the
    optimized system will send (byte-identical requests, shared cache entries);
    ``"chat"`` / ``"json"``: DSPy's stock adapters. DSPy's own meta-prompts
    (instruction proposers, GEPA reflection) use DSPy's adapters or, for small local
    models, MetaCompletionAdapter (the same meta-prompt as a completion document).
program.py
    SystemProgram: a whole System as a `dspy.Module` with one named predictor per
    optimizable llm component, run by `System.run` with those components answered
    by the predictors, so DSPy optimizers see (and trace) the named predictors.
budget.py
    The system-run cap of a DSPy optimizer (RunCounter), and `compile_within_budget`:
    a spent LM budget wins over DSPy's own error, any other failure is explained.

DSPy 3.4 deprecates the `forward()` plugin interface in favour of lm15 engines; lm.py
keeps it because only `forward()` receives `n` and `rollout_id`, which map to
distinct `sample_index` values (distinct cache entries) here.
"""
