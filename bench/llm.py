"""Benchmark the rewriter's backends on the same machine: 64 rewrites, transformers, llama.cpp and a vLLM server.

    .venv/bin/python bench/llm.py                         # starts a vLLM server with scripts/vllm-local, then stops it
    .venv/bin/python bench/llm.py --vllm openai:http://127.0.0.1:18000/v1#SmolLM2-135M-Instruct   # an existing server

Every backend gets the same chats (the `naive_rewrite` template over VBench prompts, or built-in ones without
../shared/data), greedy decoding and the same token limit. Transformers answers in left-padded batches
(`LocalLLM.generate_many`, in --dtype), llama.cpp one chat at a time (`LlamaCppLLM`, Q8_0), the server concurrently
(`OpenAILLM.generate_many`); then transformers and the server again with one chat at a time, what a person waiting for
one `rapo refine` gets (`--no-single` leaves those rows out). Prints prompts/s and generated tokens/s of each and
their ratios to the first row; writes `bench/.work/llm.json`. `--no-vllm` leaves the server out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from functools import partial
from pathlib import Path

from rapo.prompts.loader import load_template
from rapo.tools.llm import Decoding, LocalLLM
from rapo.tools.llm_llamacpp import LlamaCppLLM
from rapo.tools.llm_openai import OpenAILLM

ROOT = Path(__file__).resolve().parents[1]
VBENCH = ROOT.parent / "shared" / "data" / "benchmarks" / "vbench" / "prompts" / "all_dimension.txt"
FALLBACK = ["a dog running on the beach", "a red car driving at night", "a chef chopping onions in a kitchen",
            "a boat on a calm lake", "a cat playing with a ball", "fireworks over a city skyline"]  # fmt: skip


def prompts(n: int) -> list[str]:
    """The first `n` VBench prompts, or the built-in ones repeated."""
    lines = [line.strip() for line in VBENCH.read_text().splitlines() if line.strip()] if VBENCH.is_file() else []
    pool = lines or FALLBACK
    return [pool[i % len(pool)] for i in range(n)]


def measure(name: str, run, chats: list, decoding: Decoding) -> dict:  # noqa: ANN001 - a backend's generate_many
    """Time one backend over every chat."""
    started = time.perf_counter()
    answers = run(chats, [0] * len(chats), decoding)
    seconds = time.perf_counter() - started
    tokens = sum(a.new_tokens for a in answers)
    row = {"backend": name, "rewrites": len(chats), "seconds": round(seconds, 2), "tokens": tokens,
           "prompts_per_s": round(len(chats) / seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}  # fmt: skip
    print(f"{name:<34} {row['prompts_per_s']:>9.3f} prompts/s {row['tokens_per_s']:>8.1f} tokens/s "
          f"({tokens} tokens in {seconds:.1f} s)", flush=True)  # fmt: skip
    return row


def main() -> None:
    """Run both backends and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rewrites", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="Local backend's batch.")
    parser.add_argument("--concurrency", type=int, default=16, help="Requests in flight to the server.")
    parser.add_argument("--dtype", default="float32", help="Transformers' dtype (float32 on a CPU without AVX-512).")
    parser.add_argument("--vllm", help="openai:URL#MODEL of a running server (default: start one).")
    parser.add_argument("--no-vllm", action="store_true", help="Leave the vLLM server out.")
    parser.add_argument("--no-single", action="store_true", help="Leave out the one-chat-at-a-time rows.")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work")
    args = parser.parse_args()

    template = load_template("naive_rewrite")
    chats = [template.messages(prompt=p) for p in prompts(args.rewrites)]
    decoding = Decoding(max_new_tokens=args.max_new_tokens, temperature=0.0, repetition_penalty=1.0,
                        no_repeat_ngram_size=0)  # fmt: skip
    rows = []

    # 1. Local transformers, batched; 2. llama.cpp, one chat at a time (loading is not timed)
    local = LocalLLM(dtype=args.dtype)
    local.load()
    batched = partial(local.generate_many, batch_size=args.batch_size)
    rows.append(measure(f"transformers ({local.dtype}, batch {args.batch_size})", batched, chats, decoding))
    if not args.no_single:
        one = partial(local.generate_many, batch_size=1)
        rows.append(measure(f"transformers ({local.dtype}, one at a time)", one, chats, decoding))
    llamacpp = LlamaCppLLM("q8_0")
    llamacpp.load()
    rows.append(measure("llama.cpp (q8_0, one at a time)", llamacpp.generate_many, chats, decoding))

    # 3. vLLM, concurrent requests
    if not args.no_vllm:
        env = {**os.environ, "RAPO_VLLM_DIR": str(ROOT / ".vllm-local" / "bench")}
        spec = args.vllm
        if spec is None:
            start = [str(ROOT / "scripts" / "vllm-local"), "start"]
            spec = subprocess.run(["bash", *start], env=env, check=True, capture_output=True, text=True).stdout.strip()
        try:
            served = OpenAILLM(spec, concurrency=args.concurrency)
            served.generate(chats[0], 0, decoding)  # warm-up, not timed
            rows.append(measure(f"vLLM ({args.concurrency} in flight)", served.generate_many, chats, decoding))
            if not args.no_single:
                alone = OpenAILLM(spec, concurrency=1)
                rows.append(measure("vLLM (one request at a time)", alone.generate_many, chats, decoding))
        finally:
            if args.vllm is None:
                subprocess.run(["bash", str(ROOT / "scripts" / "vllm-local"), "stop"], env=env, check=False)

    ratios = {row["backend"]: round(row["prompts_per_s"] / rows[0]["prompts_per_s"], 2) for row in rows[1:]}
    for backend, ratio in ratios.items():
        print(f"{backend} / {rows[0]['backend']}: {ratio:.2f}x prompts/s")
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "llm.json").write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
