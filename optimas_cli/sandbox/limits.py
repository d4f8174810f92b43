"""What a sandboxed run may use (Limits) and what came of it (Result)."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["bwrap", "rlimits"]
Status = Literal["ok", "error", "timeout", "killed", "failed_to_start"]


class Limits(BaseModel):
    """Per-run resource limits; every one is enforced in both modes unless noted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_seconds: int = Field(10, ge=1)  # RLIMIT_CPU per process: SIGXCPU, then SIGKILL 1 s later
    wall_seconds: float = Field(30.0, gt=0)  # then the whole sandbox is killed
    # memory_mb and max_processes bound the whole run where it gets a cgroup (sandbox/
    # cgroups.py; shared memory and memfds included), and each process / uid always:
    memory_mb: int = Field(2048, ge=64)  # RLIMIT_AS (address space) per process; cgroup: run
    max_processes: int = Field(64, ge=1)  # RLIMIT_NPROC for the run's uid (threads count)
    max_file_mb: int = Field(16, ge=1)  # RLIMIT_FSIZE: the largest file it may write
    disk_mb: int = Field(64, ge=1)  # size of the working-dir tmpfs (bwrap mode only)
    max_open_files: int = Field(256, ge=16)  # RLIMIT_NOFILE
    max_output_bytes: int = Field(64_000, ge=1000)  # stdout/stderr kept (head and tail)


@dataclass
class Result:
    """How one sandboxed command ended, with its (possibly truncated) output."""

    status: Status  # ok: exit 0; error: exit > 0; timeout: wall limit; killed: a signal
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float  # wall time of the run, start-up of the sandbox included
    mode: Mode
    signal: str | None = None  # e.g. SIGXCPU (CPU limit) or SIGKILL
    peak_memory_mb: float | None = None  # the whole run's, where it ran in a cgroup

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        """One line saying how the run ended, for reports read by people and LLMs."""
        if self.status == "ok":
            return "exited 0"
        if self.status == "error":
            return f"exited {self.returncode}"
        if self.status == "timeout":
            return f"timed out after {self.seconds:.1f} s (wall-clock limit)"
        if self.status == "killed":
            hint = {"SIGXCPU": " (CPU-time limit)", "SIGKILL": " (CPU-time or memory limit)",
                    "SIGSEGV": " (crash, often the memory limit)"}.get(self.signal or "", "")
            return f"killed by {self.signal}{hint}"
        return f"sandbox failed to start: {self.stderr.strip()[:300]}"


def signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"
