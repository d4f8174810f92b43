"""TextGrad's TGD replies: which are usable, the counts over a run, and the run's failure.

TGD needs its optimizer model to answer inside <IMPROVED_VARIABLE>...</IMPROVED_VARIABLE>.
textgrad itself only catches a reply without the opening tag (it raises IndexError);
it takes whatever follows an opening tag, so a model that parrots TGD's own
instructions ("... between the <IMPROVED_VARIABLE> tags, and nothing else") yields a
fragment of them. `reply_problem` names each way a reply is unusable; the baseline
then keeps the instruction unchanged and records the status in history.jsonl.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from optimas_cli.layout import TEXTGRAD_STATS, TEXTGRAD_STEPS

TAGS = ("<IMPROVED_VARIABLE>", "</IMPROVED_VARIABLE>")
NO_TAGS = "no <IMPROVED_VARIABLE> tags"
UNCLOSED = "no </IMPROVED_VARIABLE> after the opening tag"
COPIED = "copied from TextGrad's own instructions"
EMPTY = "empty update"
FAILURES = {NO_TAGS: "no_tags", UNCLOSED: "unclosed", COPIED: "copied", EMPTY: "empty"}


class TextGradFailure(RuntimeError):
    """TextGrad produced no usable update in the whole run; the message says why, with counts."""


def reply_problem(reply: str, value: str, template: str) -> str | None:
    """Why `value`, which TGD parsed from `reply`, is not a usable instruction (None: it is).

    `template` is the fixed text of TGD's prompts: a value found in it was copied.
    """
    start = reply.find(TAGS[0])
    if start < 0:
        return NO_TAGS
    if reply.find(TAGS[1], start + len(TAGS[0])) < 0:
        return UNCLOSED
    if not value.strip():
        return EMPTY
    if value.strip() in template:
        return COPIED
    return None


def tgd_counts(records: list[dict[str, Any]]) -> Counter[str]:
    """TGD outcomes over a run's history (so a resumed run counts the earlier process too)."""
    counts: Counter[str] = Counter()
    for r in records:
        tg_info = r.get("textgrad") or {}
        if str(tg_info.get("error", "")).startswith("model call failed"):
            counts["lm_errors"] += 1
        for u in (tg_info.get("updates") or {}).values():
            status = u.get("status")
            if status in ("updated", "same as before"):
                counts["parsed"] += 1
            elif status in FAILURES:
                counts[FAILURES[status]] += 1
    counts["tgd_calls"] = counts["parsed"] + sum(counts[k] for k in FAILURES.values())
    return counts


def no_usable_update(n: Counter[str], engine_model: str, errors: list[str],
                     where: str) -> TextGradFailure | None:
    """The run's TextGradFailure when TGD was asked and nothing parsed (None otherwise)."""
    if not (n["tgd_calls"] or n["lm_errors"]) or n["parsed"]:
        return None
    return TextGradFailure(
        f"textgrad produced no usable instruction with engine model {engine_model!r}: "
        f"of {n['tgd_calls']} TGD optimizer replies, {n['no_tags']} had no "
        f"{TAGS[0]}...{TAGS[1]} span, {n['unclosed']} opened the tag but never closed it, "
        f"{n['copied']} copied TextGrad's own instructions, {n['empty']} were empty; "
        f"{n['lm_errors']} steps failed in a model call"
        + (f" (first: {errors[0]})" if errors else "")
        + ". TextGrad needs an optimizer model that follows its output format: set "
        "optimizer.options.engine_model to a stronger model. Replies and feedback: "
        f"{where}/{TEXTGRAD_STEPS}; counts: {TEXTGRAD_STATS}")
