"""Run model-written code in the sandbox: the `sandboxed_exec` component kind.

The component writes its inputs to files in a fresh sandbox working dir (the
```python block of an LLM reply, by default), runs a command there and returns
a report: how the run ended and the tail of its output, for a downstream LLM to
read. A second output, when declared, gets 1.0 if the command exited 0, else 0.0.

    executor:
      kind: sandboxed_exec
      inputs: [code, unit_tests]
      outputs: [execution_report]
      params:
        files: {main.py: [code, unit_tests]}    # one file from both fields
        command: [python, main.py]
        limits: {cpu_seconds: 10, memory_mb: 2048}
"""

from __future__ import annotations

import importlib.util
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from optimas_cli.components.base import BaseComponent
from optimas_cli.data import PROJECT_ROOT
from optimas_cli.errors import ConfigError
from optimas_cli.graph import Call
from optimas_cli.sandbox import Limits, Result, Sandbox, SandboxUnavailable, extract_code
from optimas_cli.schema import ComponentConfig


class SandboxedExecParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # working-dir file -> the input field(s) it holds (several are joined by blank lines)
    files: dict[str, str | list[str]] = Field(min_length=1)
    command: list[str] = Field(default_factory=lambda: ["python", "main.py"], min_length=1)
    # working-dir file -> a host file (path from the project root) or a module (dotted name)
    support_files: dict[str, str] = Field(default_factory=dict)
    extract_code: bool = True  # take the ```python block of each field (LLM replies)
    limits: Limits = Field(default_factory=Limits)
    mode: Literal["auto", "bwrap", "rlimits"] = "auto"  # auto: bwrap where it works
    max_parallel: int = Field(4, ge=1)  # runs of this component at once
    max_report_chars: int = Field(2000, gt=0)
    python: str | None = None  # the sandbox's interpreter; default the one running optimas
    pythonpath: list[str] = Field(default_factory=list)  # host dirs, read-only, on PYTHONPATH


class SandboxedExecComponent(BaseComponent):
    Params = SandboxedExecParams
    variable_types: dict[str, set[str] | None] = {}

    def __init__(self, name, cfg, resources):
        super().__init__(name, cfg, resources)
        p = self.params
        kwargs = {"python": p.python} if p.python else {}
        try:
            self.sandbox = Sandbox(p.limits, mode=p.mode, max_parallel=p.max_parallel,
                                   pythonpath=p.pythonpath, **kwargs)
        except SandboxUnavailable as e:  # the config requires bwrap; this machine lacks it
            raise ConfigError(f"component '{name}': params.mode is 'bwrap' (required), but {e}; "
                              "install bubblewrap, or set params.mode=auto to accept rlimits "
                              "mode") from e
        self.support = {dest: resolve_support_file(src).read_text()
                        for dest, src in p.support_files.items()}

    @classmethod
    def check_config(cls, name: str, cfg: ComponentConfig) -> list[tuple[str, str]]:
        problems = super().check_config(name, cfg)
        if problems:
            return problems
        p = cls.Params.model_validate(cfg.params)
        for dest, fields in p.files.items():
            for f in [fields] if isinstance(fields, str) else fields:
                if f not in cfg.inputs:
                    problems.append((f"params.files.{dest}", f"component '{name}': file "
                                     f"'{dest}' holds '{f}', which is not among its inputs "
                                     f"{cfg.inputs}"))
        for dest in [*p.files, *p.support_files]:
            pp = PurePosixPath(dest)
            if pp.is_absolute() or ".." in pp.parts:
                problems.append((f"params.files.{dest}", f"component '{name}': '{dest}' must be "
                                 "a relative path inside the working dir"))
        for dest, src in p.support_files.items():
            try:
                resolve_support_file(src)
            except FileNotFoundError as e:
                problems.append((f"params.support_files.{dest}", f"component '{name}': {e}"))
        if len(cfg.outputs) > 2:
            problems.append(("outputs", f"component '{name}' (sandboxed_exec) has at most two "
                             f"outputs (report, passed), not {cfg.outputs}"))
        return problems

    def forward(self, inputs: dict[str, Any], values: dict[str, Any], call: Call) -> dict[str, Any]:
        files = dict(self.support)
        for dest, fields in self.params.files.items():
            texts = [inputs.get(f, "") for f in ([fields] if isinstance(fields, str) else fields)]
            if self.params.extract_code:
                texts = [extract_code(t) for t in texts]
            files[dest] = "\n\n".join(str(t) for t in texts)
        result = self.sandbox.run(files, self.params.command)
        out = {self.outputs[0]: report(result, self.params.max_report_chars)}
        if len(self.outputs) > 1:
            out[self.outputs[1]] = 1.0 if result.ok else 0.0
        return out


def report(result: Result, max_chars: int) -> str:
    """How the run ended, then the end of its output (where tracebacks and summaries are)."""
    text = (result.stdout.rstrip() + "\n" + result.stderr.rstrip()).strip()
    if len(text) > max_chars:
        text = "...\n" + text[-max_chars:]
    return f"Run {result.describe()}.\n{text}".strip()


def resolve_support_file(src: str) -> Path:
    """A host file: a path (absolute, or from the working dir or project root), or a dotted
    module name whose source file is meant."""
    candidates = [Path(src)] if Path(src).is_absolute() else [Path.cwd() / src, PROJECT_ROOT / src]
    for c in candidates:
        if c.is_file():
            return c
    if "/" not in src and not src.endswith(".py"):
        try:
            spec = importlib.util.find_spec(src)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            return Path(spec.origin)
    raise FileNotFoundError(f"support file '{src}' not found (a path from the project root, "
                            "or a dotted module name)")
