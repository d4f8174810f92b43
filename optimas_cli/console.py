"""The consoles the commands print on: on a terminal, its width (tables fold their cells to
fit); in a pipe or a file, every row whole (rich would cut it at 80 columns, or at a
COLUMNS that pytest-xdist and some shells set for processes with no terminal)."""

from __future__ import annotations

from rich.console import Console

PIPE_WIDTH = 10_000  # wider than any row printed: a pipe gets each row whole


def make_console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) as wide as the terminal, or PIPE_WIDTH off one."""
    if Console(stderr=stderr).is_terminal:
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH)
