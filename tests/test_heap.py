"""Memory given back after a peak (optimas_cli/heap.py) and the reward fit's checkpointing."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import pytest

from optimas_cli import heap


def rss_anon_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("RssAnon:")[1].split()[0]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists() or ctypes.util.find_library("c") is None,
                    reason="needs Linux /proc")
def test_release_gives_freed_heap_back():
    """Blocks under malloc's mmap threshold come from the heap; freed under a live block at
    its top, they stay resident until `release` (glibc's malloc_trim) returns them."""
    before = rss_anon_mib()
    blocks = [bytearray(64 * 1024) for _ in range(3000)]  # ~190 MiB of 64 KiB heap blocks
    top = bytearray(64 * 1024)  # allocated last: keeps the heap's top from shrinking
    del blocks
    held = rss_anon_mib()
    if held - before < 100:
        pytest.skip("this C library returned the blocks on free already")
    assert heap.release()  # glibc: some memory was released
    assert rss_anon_mib() < held - 100
    del top
