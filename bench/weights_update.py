"""LoRA update cost on CPU, per method, and serving speed of an adapter (BENCHMARKS.md figures).

    python bench/weights_update.py --out runs/weights_bench.json
    python bench/weights_update.py --methods dpo --steps 4 --context-words 0

Each update runs in a fresh process (so its peak RSS is the update's own): SmolLM2-135M,
one `llm` component ("Say the colour of the thing in one word", 8 inputs) with a LoRA
`weights` variable (r 8 on q/v), a known reward (1 when the answer names blue), one update
of `--steps` optimizer steps from the base weights. `--context-words N` adds a context field
of N words to every prompt (real components' prompts are hundreds of tokens). Reported:
wall and CPU seconds, peak RSS, the measured KL to the start, and the reward (share of 8
samples per input at temperature 1 that name blue, served by llama.cpp) before and after.

Serving: the trained adapter, greedy, 48 new tokens per prompt, one stream, through
llama.cpp (the GGUF adapter on the Q4 base) and through transformers + peft (fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SMOL = "local/smollm2-135m-instruct"
THINGS = ["a car", "a shirt", "a flower", "a house", "a bird", "a book", "a hat", "a door"]
FILLER = ("The shop sells many goods in many colours and the buyer looks at each one in turn "
          "before deciding what to take home at the end of the day ").split()


def build(context_words: int):
    from optimas_cli.graph import System, build_components
    from optimas_cli.lm import LMClient
    from optimas_cli.lm.config import LMConfig
    from optimas_cli.schema import SystemConfig

    lm = LMClient(LMConfig(cache={"mode": "off"}))
    inputs = ["context", "thing"] if context_words else ["thing"]
    cfg = SystemConfig(
        name="colours", inputs=inputs, final_output="color", loader="x:y", metric="x:y",
        components={"painter": {
            "kind": "llm", "description": "Names a colour.", "inputs": inputs,
            "outputs": ["color"],
            "params": {"model": SMOL, "max_tokens": 6, "max_field_chars": 100000,
                       "instruction": "Say the colour of the thing in one word."},
            "variables": {"adapter": {"type": "weights"}}}})
    context = " ".join(FILLER[i % len(FILLER)] for i in range(context_words))
    examples = [{"thing": t, **({"context": context} if context_words else {})} for t in THINGS]
    return System(cfg, build_components(cfg, {"lm_config": lm.cfg}), lm), lm, examples


class BlueReward:
    def score(self, component, inputs, outputs):
        return [float("blue" in o["color"].lower()) for o in outputs]


def blue_rate(system, lm, examples, adapter) -> float:
    from optimas_cli.methods.optimas.updaters.weights import sample_texts
    from optimas_cli.schema import WeightsUpdateConfig

    texts = sample_texts(system, "painter", examples, {"adapter": adapter}, lm,
                         WeightsUpdateConfig(samples=8, temperature=1.0), seed=99, workers=1)
    flat = [t for ts in texts for t in ts]
    return sum("blue" in t.lower() for t in flat) / len(flat)


def one_update(args: argparse.Namespace) -> dict[str, Any]:
    """Child process: one update, its cost and effect."""
    import torch

    from optimas_cli.methods.optimas.updaters.common import UpdateContext
    from optimas_cli.methods.optimas.updaters.weights import train_adapter
    from optimas_cli.schema import UpdateConfig, WeightsUpdateConfig

    torch.set_num_threads(args.threads)
    system, lm, examples = build(args.context_words)
    prompt_tokens = lm.complete(system.components["painter"].request(
        examples[0], {"adapter": None}, _call(lm))).prompt_tokens
    before = blue_rate(system, lm, examples, None)
    cfg = WeightsUpdateConfig(method=args.method, steps=args.steps, lr=args.lr, samples=4,
                              batch_size=2, threads=args.threads, kl_samples=2)
    ctx = UpdateContext(system, "painter", [], BlueReward(), {"painter": {"adapter": None}},
                        UpdateConfig(weights=cfg), lm, seed=0, workers=1)
    info = train_adapter(ctx, "adapter", examples, Path(args.adapter_out))
    after = blue_rate(system, lm, examples, args.adapter_out)
    return {"method": args.method, "steps": args.steps, "prompt_tokens": prompt_tokens,
            "reward_before": before, "reward_after": after,
            **{k: info.get(k) for k in ("seconds", "cpu_seconds", "peak_rss_mb", "kl",
                                        "kl_per_token", "sample_seconds", "train_seconds",
                                        "pairs", "torch_threads")}}


def _call(lm):
    from optimas_cli.graph import Call

    return Call(lm=lm, component="painter")


def serving(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Child process: tokens/s of the adapter served by llama.cpp and by transformers + peft."""
    import torch
    from peft import PeftModel

    from optimas_cli.lm.base import LMRequest
    from optimas_cli.lm.local import load_hf_model

    torch.set_num_threads(args.threads)
    system, lm, examples = build(args.context_words)
    comp = system.components["painter"]
    prompts = [comp.request(x, {"adapter": args.adapter_out}, _call(lm)).prompt for x in examples]
    gguf = str(Path(args.adapter_out) / "adapter.gguf")
    rows = []
    for label, adapter in (("llama.cpp, base", None), ("llama.cpp + LoRA GGUF", gguf)):
        lm.complete(LMRequest(model=SMOL, prompt="warm up", max_tokens=2, adapter=adapter))
        t0, n = time.perf_counter(), 0
        for p in prompts:
            n += lm.complete(LMRequest(model=SMOL, prompt=p, max_tokens=48, adapter=adapter)
                             ).completion_tokens
        rows.append({"engine": label, "tokens": n, "tok_s": n / (time.perf_counter() - t0)})
    base, tok = load_hf_model(SMOL)
    model = PeftModel.from_pretrained(base, args.adapter_out).eval()
    t0, n = time.perf_counter(), 0
    with torch.no_grad():
        for p in prompts:
            ids = tok(p, return_tensors="pt")
            out = model.generate(**ids, max_new_tokens=48, min_new_tokens=48, do_sample=False)
            n += out.shape[1] - ids["input_ids"].shape[1]
    rows.append({"engine": "transformers + peft (fp32)", "tokens": n,
                 "tok_s": n / (time.perf_counter() - t0)})
    return rows


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "load_avg_1m_at_start": round(load[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="dpo,grpo")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context-words", type=int, default=0)
    ap.add_argument("--no-serving", action="store_true", help="skip the serving measurement")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--child", choices=["update", "serving"], help=argparse.SUPPRESS)
    ap.add_argument("--method", default="dpo", help=argparse.SUPPRESS)
    ap.add_argument("--adapter-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        result = one_update(args) if args.child == "update" else serving(args)
        print("RESULT " + json.dumps(result))
        return
    rows: dict[str, Any] = {"machine": machine(), "updates": [], "serving": []}
    with tempfile.TemporaryDirectory() as tmp:
        base = [sys.executable, __file__, "--steps", str(args.steps), "--lr", str(args.lr),
                "--threads", str(args.threads), "--context-words", str(args.context_words)]
        for method in args.methods.split(","):
            adapter = f"{tmp}/{method}"
            out = subprocess.run([*base, "--child", "update", "--method", method,
                                  "--adapter-out", adapter], capture_output=True, text=True)
            row = _result(out)
            rows["updates"].append(row)
            print(json.dumps(row))
        if not args.no_serving:
            serve = subprocess.run([*base, "--child", "serving", "--adapter-out", adapter],
                                   capture_output=True, text=True)
            rows["serving"] = _result(serve)
            print(json.dumps(rows["serving"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2))


def _result(proc: subprocess.CompletedProcess) -> Any:
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


if __name__ == "__main__":
    main()
