"""Budgets around a DSPy optimizer: its system-run cap, and its compile step.

DSPy turns whatever a program or an LM raises into a failed example or its own
error, so budgets are enforced from outside: RunCounter refuses system runs past an
allowance (the refused example scores 0), each OptimasLM remembers the first
BudgetExceeded it hit, and `compile_within_budget` re-raises that before explaining
any other failure of DSPy's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from optimas_cli.dspy.lm import OptimasLM
from optimas_cli.graph import System

MAX_ERRORS = 1_000_000  # DSPy's max_errors: a failed example scores 0, the search never aborts


class SystemRunBudgetExhausted(RuntimeError):
    """The system-run allowance of a DSPy optimizer is spent; the example is not run."""


class DSPyOptimizerError(RuntimeError):
    """A DSPy optimizer failed; the message names the optimizer, the model and DSPy's error."""


class RunCounter:
    """System runs spent by DSPy, with an optional hard cap (shared by all program copies)."""

    def __init__(self, system: System, limit: int | None = None):
        self.system = system
        self.limit = limit
        self.used = 0
        self.refused = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        """Count one system run; SystemRunBudgetExhausted once `limit` runs were taken."""
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                self.refused += 1
                raise SystemRunBudgetExhausted(
                    f"the optimizer's system-run allowance ({self.limit}) is spent")
            self.used += 1
        self.system.budget.record_system_run()


def explain_failure(what: str, model: str, exc: BaseException, remedy: str) -> DSPyOptimizerError:
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


def compile_within_budget(what: str, model: str, lms: list[OptimasLM], compile_fn: Callable[[], Any],
                          remedy: str) -> Any:
    """`compile_fn()` (a DSPy optimizer's compile); a spent LM budget wins over DSPy's own error.

    DSPy wraps whatever its LMs raise, so each LM re-raises its BudgetExceeded first;
    any other failure becomes a DSPyOptimizerError naming `what`, `model` and `remedy`.
    """
    try:
        best = compile_fn()
    except Exception as e:  # noqa: BLE001 - DSPy's failure, reported as such
        for lm in lms:
            lm.raise_if_over_budget()
        raise explain_failure(what, model, e, remedy) from e
    for lm in lms:
        lm.raise_if_over_budget()
    return best
