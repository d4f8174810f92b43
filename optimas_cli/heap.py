"""A process's memory: its peak, and giving freed memory back to the operating system.

glibc's malloc keeps freed heap memory for reuse, so after a peak (a reward-model fit:
its backward pass holds ~2 GB of activations) the process's RSS stays at the peak for the
rest of the run, next to the LLMs. `release` collects garbage and asks glibc to return
every free page (`malloc_trim(0)`); on another C library it only collects garbage.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import resource
import sys
from pathlib import Path

log = logging.getLogger("optimas.heap")


def release() -> bool:
    """Collect garbage, then return free heap pages to the OS; True if glibc released any."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    trim = getattr(libc, "malloc_trim", None)  # glibc only (not musl, not macOS)
    return bool(trim(0)) if trim is not None else False


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB (the LLMs' mapped weights included)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """A process's /proc/PID/smaps_rollup in KiB (Rss, Pss, Pss_Anon, ...): RSS counts a file
    mapped twice twice, PSS once. Empty once the process has exited, or off Linux."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out
