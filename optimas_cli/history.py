"""The optimization history: one record per step in history.jsonl, and the accept rule.

Every method (the Optimas loop and each baseline) writes the same records, so the
final stage, `optimas show` and `optimas compare` read them alike. `HistoryRecord` below
is the record format, documented there and only there; writers append through
`append_record` (validated, so a malformed record fails when it is written), readers
get typed records from `read_history` and a record's component steps from `steps_of`.

A candidate is accepted by comparing it with the incumbent on the same validation
examples (`decide`): by the mean gain, or by a one-sided paired bootstrap bound or sign
test at a set confidence (optimizer.accept_rule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from optimas_cli import tracking
from optimas_cli.graph import State
from optimas_cli.layout import HISTORY
from optimas_cli.schema import OptimizerConfig
from optimas_cli.stats import lower_bound, paired_diff, sign_test_greater

if TYPE_CHECKING:
    from optimas_cli.run_dir import RunDir

SHORT_KEYS = ("mean", "std", "n", "failed", "scores")


# ------------------------------------------------------------------ the record format


class ValSummary(BaseModel):
    """What a record keeps of a validation run (`short`): the mean score over the val
    split, its std, the number of examples, how many failed, the per-example scores."""

    model_config = ConfigDict(extra="allow")

    mean: float
    std: float | None = None
    n: int | None = None
    failed: int | None = None
    scores: list[float] | None = None


class Decision(BaseModel):
    """Why a candidate was accepted or not (`decide`, without its "accepted")."""

    model_config = ConfigDict(extra="allow")

    rule: str = Field(description="optimizer.accept_rule: mean, bootstrap or sign")
    gain: float = Field(description="candidate mean - incumbent mean on the same examples")
    paired: dict[str, Any] | None = Field(
        None, description="the paired difference: {mean, low, high, wins, losses, ...}")
    bound: float | None = Field(None, description="one-sided bootstrap lower bound of the gain")
    sign_p_greater: float | None = Field(None, description="one-sided exact sign test p")


INITIAL_NEEDS = ("val",)
ITERATION_NEEDS = ("component", "val_before", "val_after", "accepted", "changed")


class HistoryRecord(BaseModel):
    """One line of history.jsonl: the one documentation of the record format.

    Record 0 is the initial system (kind "initial"): its `val` summary and `state`.
    Every later record is one iteration (kind "iteration") of whichever method ran: the
    Optimas loop (methods/optimas/loop.py) or a baseline's Trial (methods/trial.py), which
    write the same fields, so `optimas show`, `optimas compare` and the final stage read
    every method alike. Each record ends with what the run had spent by then (the keys of
    optimas_cli.budget.SPENT_KEYS; `component_calls` is missing from older runs).

    `steps`: an iteration that optimized several components
    (optimizer.components_per_iteration) lists them in order, each {component, reason,
    inputs, pairs, lrf, lrf_dir, adapted, update, tied, skipped, ...}; one that optimized
    one component holds those fields itself and is written without `steps`.
    `from_dict` and `steps_of` then give it `steps` == [the record itself], so a reader
    always iterates `steps`. Method-specific fields (a baseline's "origin", "method",
    "round", "variable", "textgrad", the loop's "reason", "gaps", "update", "lrf", ...)
    are kept as extras.

    Writers append the dict they built (`append_record`); this model validates it and
    never rewrites it, so the file holds exactly what was written.
    """

    model_config = ConfigDict(extra="allow")

    iteration: int = Field(ge=0, description="0 for the initial record, then 1, 2, ...")
    kind: Literal["initial", "iteration"]
    state: State = Field(description="the accepted state after this record "
                                     "(component -> variable -> value)")
    # the initial record
    val: ValSummary | None = Field(None, description="initial: the starting system on val; "
                                   "a baseline's iteration: its candidate on val")
    # an iteration record
    component: str | None = Field(None, description='the component optimized ("a+b" when '
                                  'several, "all" for a whole-system baseline candidate)')
    components: list[str] | None = Field(None, description="the components of `steps`")
    val_before: float | None = Field(None, description="the incumbent's val mean")
    val_after: float | None = Field(None, description="the candidate's val mean "
                                    "(val_before when nothing was validated)")
    accepted: bool | None = Field(None, description="whether the candidate replaced the incumbent")
    changed: bool | None = Field(None, description="whether the step proposed a different state")
    decision: Decision | None = None
    scores_after: list[float] | None = Field(None, description="the candidate's val score per "
                                             "example, in val order")
    tried: State | None = Field(None, description="the candidate state validated")
    validation_of: int | None = Field(None, description="the iteration that had validated "
                                      "`tried` already (not run again)")
    skipped: str | None = Field(None, description="why the component(s) could not be optimized")
    seconds: float | None = Field(None, description="wall time of the iteration")
    lrf_dir: str | None = Field(None, description="the local reward model the iteration saved "
                                "(the last one fitted), relative to the run directory")
    candidate: State | None = Field(None, description="a baseline's candidate: the variables "
                                    "it changes, with their values")
    steps: list[dict[str, Any]] | None = Field(None, description="the component steps (see above)")
    # spend so far (optimas_cli.budget.SPENT_KEYS)
    system_runs: int | None = None
    component_calls: int | None = None
    lm_calls: int | None = None
    lm_requests: int | None = None
    lm_tokens: int | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> HistoryRecord:
        needs = INITIAL_NEEDS if self.kind == "initial" else ITERATION_NEEDS
        missing = [k for k in needs if getattr(self, k) is None]
        if missing:
            raise ValueError(f"an {self.kind} record needs {', '.join(map(repr, missing))}")
        return self

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> HistoryRecord:
        """A record as read from history.jsonl, validated; an iteration gets its `steps`."""
        out = cls.model_validate(record)
        if out.kind == "iteration" and out.steps is None:
            out.steps = steps_of(record)
        return out


def append_record(run_dir: RunDir, record: dict[str, Any]) -> HistoryRecord:
    """Validate `record` (a HistoryRecord, or pydantic.ValidationError naming what is
    wrong) and append it to the run directory's history.jsonl as it is."""
    model = HistoryRecord.model_validate(record)
    run_dir.append_jsonl(HISTORY, record)
    tracking.current().record(record)  # tracking=mlflow: the record's metrics
    return model


def read_history(run_dir: RunDir) -> list[HistoryRecord]:
    """The run directory's history.jsonl, typed (HistoryRecord.from_dict)."""
    return [HistoryRecord.from_dict(r) for r in run_dir.read_jsonl(HISTORY)]


# ------------------------------------------------------------------ reading records


def short(summary: dict[str, Any]) -> dict[str, Any]:
    """What a history record keeps of an evaluation summary."""
    return {k: summary[k] for k in SHORT_KEYS if k in summary}


def accepted_val(record: dict[str, Any]) -> float:
    """Validation score of the system a history record leaves in place."""
    if record.get("kind") == "initial":
        return record["val"]["mean"]
    return record["val_after"] if record["accepted"] else record["val_before"]


def accepted_scores(history: list[dict[str, Any]]) -> list[float] | None:
    """Per-example validation scores of the system the history leaves in place (None: unknown)."""
    for record in reversed(history):
        if record.get("kind") == "initial":
            return record["val"].get("scores")
        if record.get("accepted"):
            return record.get("scores_after")
    return None


def decide(candidate: dict[str, Any], incumbent_mean: float, incumbent_scores: list[float] | None,
           opt: OptimizerConfig, seed: int = 0) -> dict[str, Any]:
    """Accept `candidate` (a val summary) over the incumbent? With the paired difference.

    mean:      mean gain > accept_threshold (the means are over the same examples);
    bootstrap: the paired difference exceeds accept_threshold with confidence
               accept_confidence: the one-sided bootstrap lower bound ("bound") > threshold;
    sign:      more wins than losses, gain > accept_threshold, and the one-sided exact sign
               test (McNemar's on a 0/1 metric) gives p < 1 - accept_confidence.

    Both paired rules are one-sided, as acceptance is: a candidate is taken when it is
    better with the stated confidence. "paired" is the two-sided interval at
    accept_confidence, for the record.
    """
    gain = candidate["mean"] - incumbent_mean
    out: dict[str, Any] = {"rule": opt.accept_rule, "gain": gain}
    scores = candidate.get("scores")
    if scores is not None and incumbent_scores is not None and len(scores) == len(incumbent_scores):
        d = paired_diff(scores, incumbent_scores, confidence=opt.accept_confidence, seed=seed)
        out["paired"] = d.to_dict()
        out["bound"] = round(lower_bound(scores, incumbent_scores,
                                         confidence=opt.accept_confidence, seed=seed), 6)
        out["sign_p_greater"] = round(sign_test_greater(d.wins, d.losses), 6)
    elif opt.accept_rule != "mean":
        raise ValueError("a paired accept rule needs per-example validation scores of both systems")
    if opt.accept_rule == "mean":
        out["accepted"] = gain > opt.accept_threshold
    elif opt.accept_rule == "bootstrap":
        out["accepted"] = out["bound"] > opt.accept_threshold
    else:
        p = out["paired"]
        out["accepted"] = (p["wins"] > p["losses"] and gain > opt.accept_threshold
                           and out["sign_p_greater"] < 1 - opt.accept_confidence)
    return out


def validated_before(history: list[dict[str, Any]], state: State) -> dict[str, Any] | None:
    """The val summary ({mean, scores, iteration}) of `state` if an earlier step validated
    it (its "tried" state, or the initial state), else None: the same system on the same
    validation examples need not be paid for twice."""
    for record in history:
        tried = record["state"] if record.get("kind") == "initial" else record.get("tried")
        if tried == state:
            val = record.get("val", {}) if record.get("kind") == "initial" else {
                "mean": record["val_after"], "scores": record.get("scores_after")}
            return {"mean": val["mean"], "scores": val.get("scores"),
                    "iteration": record["iteration"]}
    return None


def steps_of(record: dict[str, Any] | HistoryRecord) -> list[dict[str, Any]]:
    """The component steps of a history record (HistoryRecord.steps): an iteration that
    optimized several components lists them in `steps`, one that optimized one is its own
    step, and the initial record has none."""
    if isinstance(record, HistoryRecord):
        return list(record.steps or [])
    if record.get("kind") != "iteration":
        return []
    return record.get("steps", [record])


def contributions(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What each variable contributed: for every accepted step, the variables whose value it
    changed ("component.variable", joined by "+" when one step changed several) and its paired
    validation gain over the system before it; gains of the same key add up.

    Steps change the system in turn, so each gain is measured on top of the earlier ones.
    """
    out: dict[str, dict[str, Any]] = {}
    current: State | None = None
    for record in history:
        state = record.get("state")
        if record.get("kind") == "initial":
            current = state
            continue
        if not record.get("accepted") or state is None or current is None:
            continue
        changed = [f"{c}.{v}" for c in state for v in state[c]
                   if current.get(c, {}).get(v) != state[c][v]]
        if changed:
            entry = out.setdefault("+".join(changed), {"steps": [], "val_gain": 0.0})
            entry["steps"].append(record.get("iteration"))
            entry["val_gain"] += record["val_after"] - record["val_before"]
        current = state
    return out
