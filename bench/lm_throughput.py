"""LM throughput benchmark: the embedded model ladder, raw llama-cpp vs our LMClient, transformers.

    python bench/lm_throughput.py --out BENCHMARKS-lm.json
    python bench/lm_throughput.py --sections l      # just the ladder: every local model

Sections (same fixed prompts, greedy, in one run):
  l  every local model (smallest first): load time, prompt and generation tok/s
  a  raw llama-cpp, one prompt at a time
  b  raw llama-cpp, parallel instances x threads combos (best = the runtime's best)
  c  LMClient (cache off) under N concurrent caller threads
  d  HotpotQA eval throughput: hook for the lead (see `section_d_hotpotqa`)
  e  transformers loading the same GGUF: load time, single-stream, batched-16
Prints a Markdown table and writes rows + machine description as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimas_cli.lm import LMClient, LMConfig, LMRequest  # noqa: E402
from optimas_cli.lm.local import (  # noqa: E402
    LOCAL_MODELS,
    available_cores,
    gguf_path,
    load_llama,
)

QUESTIONS = [
    "Which city is the capital of France?",
    "Who wrote the novel Pride and Prejudice?",
    "What is the boiling point of water in Celsius?",
    "Name the largest planet in the solar system.",
    "Which element has the chemical symbol Fe?",
    "In which year did the Second World War end?",
    "Who painted the Mona Lisa?",
    "What is the longest river in Africa?",
    "Which language is spoken in Brazil?",
    "What is the square root of 81?",
    "Who developed the theory of general relativity?",
    "Which ocean lies between Africa and Australia?",
    "What gas do plants absorb from the air?",
    "Which country hosted the 2008 Summer Olympics?",
    "What is the currency of Japan?",
    "Who was the first person to walk on the Moon?",
]
Row = dict[str, Any]


def messages(q: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer the question in one short sentence."},
            {"role": "user", "content": q}]


def row(section: str, engine: str, setting: str, n_req: int, n_tok: int, wall: float,
        cpu_s: float | None = None, **extra: Any) -> Row:
    """One table row. cpu_s (process CPU time) and load1 make numbers from a
    shared, busy machine interpretable: tokens per CPU-second ignore waiting."""
    return {"section": section, "engine": engine, "setting": setting, "requests": n_req,
            "completion_tokens": n_tok, "wall_s": round(wall, 3),
            "tokens_per_s": round(n_tok / wall, 1) if wall else None,
            "requests_per_s": round(n_req / wall, 2) if wall else None,
            "tokens_per_cpu_s": round(n_tok / cpu_s, 1) if cpu_s else None,
            "load1": round(os.getloadavg()[0], 2), **extra}


def load_llamas(path: Path, k: int, threads: int, n_ctx: int) -> list[Any]:
    return [load_llama(path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                       verbose=False) for _ in range(k)]


# Section l's prompt: a completion document of about 300 tokens, the shape our llm
# components send (instruction, context, question), so prompt tok/s is measured on
# a realistic prefill and generation tok/s on up to --max-tokens new tokens.
FACTS = (
    "Paris is the capital and largest city of France. Jane Austen wrote Pride and Prejudice, "
    "published in 1813. At sea level, water boils at 100 degrees Celsius. Jupiter is the "
    "largest planet in the solar system, more than twice as massive as all the others "
    "combined. Iron has the chemical symbol Fe, from the Latin ferrum. The Second World War "
    "ended in 1945. Leonardo da Vinci painted the Mona Lisa in the early sixteenth century. "
    "The Nile, about 6,650 km long, is the longest river in Africa. Portuguese is the official "
    "language of Brazil. The square root of 81 is 9. Albert Einstein published the theory of "
    "general relativity in 1915. The Indian Ocean lies between Africa and Australia. Plants "
    "absorb carbon dioxide from the air and release oxygen. Beijing hosted the 2008 Summer "
    "Olympics. The yen is the currency of Japan. Neil Armstrong was the first person to walk "
    "on the Moon, in July 1969."
)


def ladder_prompt(question: str) -> str:
    return ("Read the context and answer the question in one sentence.\n\n"
            f"Context: {FACTS}\n\nQuestion: {question}\nAnswer:")


def section_ladder(args: argparse.Namespace) -> list[Row]:
    """Each model once, one instance, the same prompts one at a time; prompt and generation
    speed from llama.cpp's own counters (prefill vs one-token decode steps).

    One thread by default, as each instance of the runtime's default pool (2 x 1) has:
    on two shared cores a 2-thread instance's barriers wait on a descheduled sibling,
    and its speed fell 5-10x whenever other jobs ran (measured on SmolLM2).
    """
    import llama_cpp

    cores, rows = args.ladder_threads, []
    for model in args.ladder:
        path = gguf_path(model)  # assembles a split model first if needed (not timed)
        t0 = time.perf_counter()
        llm = load_llama(path, n_ctx=args.n_ctx, n_threads=cores, n_threads_batch=cores,
                         verbose=False)
        load_s = time.perf_counter() - t0
        llm.create_completion("Hi", max_tokens=4, temperature=0)  # warm-up
        llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
        t0, c0 = time.perf_counter(), time.process_time()
        for q in QUESTIONS[: args.ladder_prompts]:
            llm.reset()  # as LMClient does: the whole prompt is evaluated every time
            llm.create_completion(ladder_prompt(q), max_tokens=args.max_tokens, temperature=0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
        rows.append(row(
            "l", model, f"1 inst x {cores} thr", args.ladder_prompts, perf.n_eval, wall, cpu,
            load_s=round(load_s, 2), file_mib=round(path.stat().st_size / 2**20),
            prompt_tokens=perf.n_p_eval,
            prompt_tok_s=round(perf.n_p_eval / (perf.t_p_eval_ms / 1000), 1),
            gen_tok_s=round(perf.n_eval / (perf.t_eval_ms / 1000), 1) if perf.t_eval_ms else None,
            description=LOCAL_MODELS[model.removeprefix("local/")].description))
        del llm
    return rows


def run_raw(llamas: list[Any], max_tokens: int) -> tuple[int, float, float]:
    """All prompts, each worker thread owning one Llama; (completion tokens, wall s, cpu s)."""
    for llm in llamas:  # warm-up outside the timing
        llm.create_chat_completion(messages=messages("Hi"), max_tokens=4, temperature=0)
    work = list(QUESTIONS)
    lock = threading.Lock()
    tokens = [0]

    def worker(llm: Any) -> None:
        while True:
            with lock:
                if not work:
                    return
                q = work.pop(0)
            llm.reset()  # as LMClient does: no KV prefix reuse, results independent of order
            out = llm.create_chat_completion(messages=messages(q), max_tokens=max_tokens,
                                             temperature=0)
            with lock:
                tokens[0] += out["usage"]["completion_tokens"]

    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(len(llamas)) as ex:
        list(ex.map(worker, llamas))
    return tokens[0], time.perf_counter() - t0, time.process_time() - c0


def section_ab(args: argparse.Namespace) -> list[Row]:
    path, cores = gguf_path(args.model), available_cores()
    combos = [(1, cores)] + [(k, t) for k, t in args.combos if (k, t) != (1, cores)]
    rows: list[Row] = []
    for i, (k, t) in enumerate(combos):
        llamas = load_llamas(path, k, t, args.n_ctx)
        n_tok, wall, cpu = run_raw(llamas, args.max_tokens)
        setting = f"{k} inst x {t} thr" + (", one at a time" if i == 0 else f", {k} parallel")
        rows.append(row("a" if i == 0 else "b", "llama-cpp raw", setting, len(QUESTIONS),
                        n_tok, wall, cpu, instances=k, threads=t))
        del llamas
    return rows


def section_c(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for instances in args.client_instances:
        cfg = LMConfig(cache={"mode": "off"}, local={"instances": instances, "n_ctx": args.n_ctx})
        lm = LMClient(cfg)
        reqs = [LMRequest(model=args.model, messages=tuple((m["role"], m["content"])
                                                           for m in messages(q)),
                          max_tokens=args.max_tokens) for q in QUESTIONS]
        with ThreadPoolExecutor(instances) as ex:  # warm-up: load every instance
            list(ex.map(lm.complete, [LMRequest(model=args.model, prompt="Hi", max_tokens=4)]
                        * instances))
        for callers in args.callers:
            before = lm.snapshot()
            t0, c0 = time.perf_counter(), time.process_time()
            with ThreadPoolExecutor(callers) as ex:
                list(ex.map(lm.complete, reqs))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            d = lm.snapshot() - before
            threads = cfg.local.n_threads or max(1, available_cores() // instances)
            rows.append(row("c", "LMClient (cache off)",
                            f"{instances} inst x {threads} thr, {callers} callers",
                            d.calls, d.completion_tokens, wall, cpu, instances=instances,
                            threads=threads, callers=callers))
    return rows


def section_d_hotpotqa(args: argparse.Namespace) -> list[Row]:
    """HotpotQA evaluation through the real CLI: sequential vs concurrent, cold vs warm cache."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import hotpotqa_eval

    out = []
    for r in hotpotqa_eval.run(args.hotpot_n):
        out.append(row("d", "optimas evaluate hotpotqa", r["setting"], r["examples"], 0, r["wall_s"],
                       examples_per_s=r["examples_per_s"], peak_rss_mib=r["peak_rss_mib"],
                       model_calls=r["model_calls"], cache_hits=r["cache_hits"], f1=r["f1"]))
    return out


def section_e(args: argparse.Namespace) -> list[Row]:
    import torch

    from optimas_cli.lm.local import load_hf_model

    torch.set_num_threads(available_cores())
    t0 = time.perf_counter()
    model, tok = load_hf_model(args.model, reuse_conversion=False)  # time the GGUF path
    load_s = time.perf_counter() - t0
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    texts = [tok.apply_chat_template(messages(q), tokenize=False, add_generation_prompt=True)
             for q in QUESTIONS]

    def gen(batch: list[str]) -> int:
        enc = tok(batch, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=args.max_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        stop_ids = {tok.eos_token_id, tok.pad_token_id}
        return sum(next((i for i, t in enumerate(seq.tolist()) if t in stop_ids), len(seq))
                   for seq in new)

    gen(texts[:1])  # warm-up
    single = texts[: args.hf_single]
    t0, c0 = time.perf_counter(), time.process_time()
    n_single = sum(gen([t]) for t in single)
    wall_single, cpu_single = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    n_batch = gen(texts)
    wall_batch, cpu_batch = time.perf_counter() - t0, time.process_time() - c0
    return [
        row("e", "transformers (GGUF->fp32)", f"single stream, {len(single)} prompts",
            len(single), n_single, wall_single, cpu_single, load_s=round(load_s, 2)),
        row("e", "transformers (GGUF->fp32)", f"batched {len(texts)}", len(texts), n_batch,
            wall_batch, cpu_batch, load_s=round(load_s, 2)),
    ]


SECTIONS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "l": section_ladder, "ab": section_ab, "c": section_c, "d": section_d_hotpotqa, "e": section_e,
}


def machine() -> dict[str, Any]:
    import llama_cpp

    cpu = "unknown"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                   .splitlines() if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": available_cores(), "mem_gib": round(mem_gib, 1),
            "python": platform.python_version(), "llama_cpp_python": llama_cpp.__version__,
            "platform": platform.platform()}


def ladder_markdown(rows: list[Row]) -> str:
    head = ("| model | GGUF MiB | load s | prompts | prompt tokens | prompt tok/s "
            "| generated tokens | generation tok/s | wall s | tok/CPU-s | load1 |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['engine'].removeprefix('local/')} | {r['file_mib']} | {r['load_s']} | "
             f"{r['requests']} | {r['prompt_tokens']} | {r['prompt_tok_s']} | "
             f"{r['completion_tokens']} | {r['gen_tok_s']} | {r['wall_s']} | "
             f"{r['tokens_per_cpu_s']} | {r['load1']} |"
             for r in rows]
    return "\n".join([head, *lines])


def markdown(rows: list[Row]) -> str:
    head = ("| sec | engine | setting | req | tokens | wall s | tok/s | req/s | tok/CPU-s | load1 |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['section']} | {r['engine']} | {r['setting']} | {r['requests']} | "
             f"{r['completion_tokens']} | {r['wall_s']} | {r['tokens_per_s']} | "
             f"{r['requests_per_s']} | {r['tokens_per_cpu_s']} | {r['load1']} |" for r in rows]
    loads = {r["load_s"] for r in rows if "load_s" in r}
    tail = [f"\ntransformers GGUF load time: {', '.join(f'{s} s' for s in loads)}"] if loads else []
    return "\n".join([head, *lines, *tail])


def pairs(text: str) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in p.split("x")) for p in text.split(",")]  # type: ignore[misc]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="BENCHMARKS-lm.json")
    ap.add_argument("--model", default="local/smollm2-135m-instruct")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--combos", type=pairs, default="2x1,1x1,2x2",
                    help="instances x threads for section b, e.g. 2x1,1x1")
    ap.add_argument("--client-instances", type=lambda s: [int(x) for x in s.split(",")],
                    default="1,2")
    ap.add_argument("--callers", type=lambda s: [int(x) for x in s.split(",")], default="1,4")
    ap.add_argument("--hf-single", type=int, default=4, help="prompts for single-stream HF")
    ap.add_argument("--sections", default="l,ab,c,d,e", help="any of l,ab,c,d,e")
    ap.add_argument("--ladder", type=lambda s: [m if m.startswith("local/") else f"local/{m}"
                                                for m in s.split(",")],
                    default=",".join(LOCAL_MODELS), help="models for section l")
    ap.add_argument("--ladder-prompts", type=int, default=4, help="prompts per model in l")
    ap.add_argument("--ladder-threads", type=int, default=1, help="threads of the instance in l")
    ap.add_argument("--hotpot-n", type=int, default=20, help="test examples for section d")
    args = ap.parse_args()

    rows: list[Row] = []
    t0 = time.perf_counter()
    for name in args.sections.split(","):
        print(f"[bench] section {name} ...", file=sys.stderr, flush=True)
        rows += SECTIONS[name](args)
    info = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "model": args.model,
            "max_tokens": args.max_tokens, "prompts": len(QUESTIONS), "machine": machine(),
            "total_s": round(time.perf_counter() - t0, 1), "rows": rows}
    Path(args.out).write_text(json.dumps(info, indent=2) + "\n")
    ladder = [r for r in rows if r["section"] == "l"]
    if ladder:
        print(ladder_markdown(ladder) + "\n")
    rest = [r for r in rows if r["section"] not in ("d", "l")]
    if rest:
        print(markdown(rest))
    d = [r for r in rows if r["section"] == "d"]
    if d:
        print("\n| HotpotQA evaluate | examples | wall s | examples/s | peak RSS MiB | model calls "
              "| cache hits | F1 |\n|---|---|---|---|---|---|---|---|")
        for r in d:
            print(f"| {r['setting']} | {r['requests']} | {r['wall_s']} | {r['examples_per_s']} | "
                  f"{r['peak_rss_mib']} | {r['model_calls']} | {r['cache_hits']} | {r['f1']} |")
    print(f"\n{info['machine']}\ntotal {info['total_s']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
