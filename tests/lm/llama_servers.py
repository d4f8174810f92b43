"""Real OpenAI-compatible servers on 127.0.0.1 for the tests of the served path: llama-cpp-
python's server of an embedded GGUF (one thread each), and what its log says it served."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from optimas_cli.lm.local import gguf_path

SMOL = "local/smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str  # the /v1 URL
    proc: subprocess.Popen
    log: Path

    def served(self) -> list[dict[str, int]]:
        """One row per answered request, from the server's own log: prompt tokens (those
        reused from the previous prompt plus those evaluated) and decode runs."""
        rows, cur = [], {"prompt": 0, "runs": 0}
        for line in self.log.read_text(errors="replace").splitlines():
            if m := re.search(r"(\d+) prefix-match hit", line):
                cur["prompt"] += int(m.group(1))
            elif m := re.search(r"prompt eval time =.*/\s*(\d+) tokens", line):
                cur["prompt"] += int(m.group(1))
            elif m := re.search(r"^llama_perf_context_print:\s+eval time =.*/\s*(\d+) runs", line):
                cur["runs"] = int(m.group(1))
            elif '"POST /v1/' in line and " 200 " in line:
                rows.append(cur)
                cur = {"prompt": 0, "runs": 0}
        return rows


@contextlib.contextmanager
def llama_server(directory: Path, model: str = SMOL, alias: str = "smollm2") -> Iterator[Server]:
    """llama_cpp.server of `model` with one thread (generation and prompt batches: its default batch threads are all the cores) on a free port; stopped on exit."""
    port = free_port()
    log = directory / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path(model)),
             "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
             "--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "2048"], stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}/v1", proc, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{server.base}/models", timeout=2).close()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not come up on {server.base}: see {log}")
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
