"""Python code out of LLM replies: fenced blocks, and whether the code parses."""

from __future__ import annotations

import ast
import re

# A fence opens with ``` and an optional language tag; a reply cut off by max_tokens
# leaves the last block unclosed, so the end of the text also closes a block.
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code of a reply: its ```python (or untagged) fenced blocks, the longest one that
    defines `entry_point` when one does, else the longest; without fences, the whole text."""
    text = str(text or "")
    blocks = [body.strip("\n") for tag, body in _FENCE.findall(text)
              if tag.lower() in _PYTHON_TAGS]
    blocks = [b for b in blocks if b.strip()]
    if not blocks:
        return text.strip("\n")
    if entry_point:
        defining = [b for b in blocks if re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\b",
                                                   b, re.MULTILINE)]
        blocks = defining or blocks
    return max(blocks, key=len)


def parses(code: str) -> bool:
    """True when `code` is non-empty Python that parses."""
    if not str(code or "").strip():
        return False
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return False
    return True
