"""Run untrusted (model-written) code: a separate process tree in a fresh directory,
under CPU, wall-time, memory, process and file-size limits, with no secrets, and in
bubblewrap namespaces (no network, no host files) where the machine has it.

    sandbox = Sandbox(Limits(cpu_seconds=5), max_parallel=4)
    result = sandbox.run({"main.py": code}, ["python", "main.py"])
"""

from optimas_cli.sandbox.code import extract_code, parses
from optimas_cli.sandbox.limits import Limits, Result
from optimas_cli.sandbox.run import Job, Sandbox, SandboxUnavailable

__all__ = ["Job", "Limits", "Result", "Sandbox", "SandboxUnavailable", "extract_code", "parses"]
