"""Where `rapo refine`'s seconds go, cold and warm, per LLM backend, and prompts per hour of a --file batch.

    .venv/bin/python bench/refine_speed.py                       # float32 vs q8_0, 100 VBench prompts
    .venv/bin/python bench/refine_speed.py --prompts 16 --batches float32:1,float32:16 --backends float32

Every figure is measured in one run beside its baseline, transformers in float32 (what a CPU without AVX-512 runs,
and what `rapo refine` ran before llama.cpp):
1. Cold, per backend (`--backends`, RAPO_LLM_DTYPE values): `rapo refine --local PROMPT` as a subprocess (imports,
   model loads, the LLM calls), twice; the second is the one a person waits for once caches are built.
2. Warm, per backend: a `rapo serve` started once, then `rapo refine PROMPT` --warm-runs times (the client imports
   no torch).
3. Batch (`--batches DTYPE:SIZE,...`, the first is the baseline): Stage 1 loaded once in this process over
   --prompts prompts (VBench's, or built-in ones without ../shared/data), SIZE at a time (`Stage1.run_many`; 1 is
   `Stage1.run`, what `rapo refine --file` did before batching), same seed; prompts/hour of each, its ratio to the
   baseline, and how many results equal the baseline's when the dtype is the same (all of them in float32). DTYPE
   `vllm` asks a vLLM server (`scripts/vllm-local`, started for that row only) with the shipped adapter as its LoRA
   module `rapo`, SIZE prompts at a time and up to 8 requests in flight (`OpenAILLM`'s default).

Prints each figure beside its baseline; writes `bench/.work/refine_speed.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.llm import prompts as vbench_prompts  # noqa: E402

RAPO = [sys.executable, "-m", "rapo"]
PROMPT = "a dog running on the beach"


def wall(args: list[str], env: dict) -> tuple[float, str]:
    """Seconds a `rapo` subprocess takes, and its stdout."""
    started = time.perf_counter()
    proc = subprocess.run([*RAPO, *args], capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"rapo {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def cold_and_warm(env: dict, runs: int, dtype: str) -> dict:
    """Cold (--local) and warm (through `rapo serve`) wall times of one refine with RAPO_LLM_DTYPE=dtype, in s."""
    env = {**env, "RAPO_LLM_DTYPE": dtype}
    cold = [wall(["refine", "--local", "--json", PROMPT], env) for _ in range(2)]
    for seconds, out in cold:
        print(f"{dtype:<8} cold  rapo refine --local: {seconds:6.1f} s wall; timings {json.loads(out)['timings']}",
              flush=True)  # fmt: skip
    server = subprocess.Popen([*RAPO, "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    folder = Path(env["RAPO_HOME"]) / "servers"
    try:
        deadline = time.monotonic() + 600
        while not list(folder.glob("*.json")) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        warm = [wall(["refine", "--json", PROMPT], env) for _ in range(runs)]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    for seconds, out in warm:
        result = json.loads(out)
        print(f"{dtype:<8} warm  rapo refine (served): {seconds:6.1f} s wall; {len(result['prompt'].split())} words; "
              f"timings {result['timings']}", flush=True)  # fmt: skip
    return {"cold_s": [round(s, 2) for s, _ in cold], "warm_s": [round(s, 2) for s, _ in warm],
            "warm_median_s": round(statistics.median(s for s, _ in warm), 2)}  # fmt: skip


def batch(texts: list[str], dtype: str, size: int, target: str, served: str | None = None) -> tuple[dict, list]:
    """Prompts/hour of Stage 1 over `texts`, `size` at a time, in this process; the row and the results.

    `dtype` "vllm" asks the vLLM server `served` (openai:URL#MODEL) with the shipped adapter as its LoRA module.
    """
    from rapo.agent.runs.refine import open_graph, stage1_pipeline
    from rapo.agent.settings import Settings
    from rapo.tools.stage1 import Stage1Settings

    settings = Settings()
    llm, adapter = (served, VLLM_LORA) if dtype == "vllm" else (settings.llm, None)
    pipeline = stage1_pipeline(open_graph(None, settings), llm, dtype, Stage1Settings(target=target), adapter)
    pipeline.load()
    started = time.perf_counter()
    if size == 1:
        results = [pipeline.run(p, 0) for p in texts]
    else:
        results = [r for i in range(0, len(texts), size) for r in pipeline.run_many(texts[i : i + size], 0)]
    seconds = time.perf_counter() - started
    words = statistics.median(len(r.prompt.split()) for r in results)
    row = {"prompts": len(texts), "dtype": pipeline.llm.dtype, "batch": size, "target": target,
           "seconds": round(seconds, 1), "per_hour": round(len(texts) / seconds * 3600),
           "median_words": words}  # fmt: skip
    return row, results


VLLM_LORA = "rapo"
VLLM_ENV = {**os.environ, "RAPO_VLLM_DIR": str(ROOT / ".vllm-local" / "bench")}


def start_vllm() -> str:
    """A vLLM server (`scripts/vllm-local`) serving SmolLM2 with the shipped adapter as LoRA module `rapo`."""
    from rapo.tools.adapters import DEFAULT_ADAPTER

    start = ["bash", str(ROOT / "scripts" / "vllm-local"), "start", "--lora", f"{VLLM_LORA}={DEFAULT_ADAPTER}"]
    return subprocess.run(start, env=VLLM_ENV, check=True, capture_output=True, text=True).stdout.strip()


def batches(n: int, configs: list[tuple[str, int]], target: str) -> list[dict]:
    """`batch` for every (dtype, size) over the same `n` prompts; ratios and identical results against the first."""
    texts = vbench_prompts(n)
    rows, base = [], None
    for dtype, size in configs:
        if dtype == "vllm":  # started for its row only: an idle server would still compete for the two cores
            served = start_vllm()
            try:
                row, results = batch(texts, dtype, size, target, served)
            finally:
                subprocess.run(["bash", str(ROOT / "scripts" / "vllm-local"), "stop"], env=VLLM_ENV, check=False)
        else:
            row, results = batch(texts, dtype, size, target)
        if base is None:
            base = (row, results)
        row["vs_baseline"] = round(row["per_hour"] / base[0]["per_hour"], 2)
        if row["dtype"] == base[0]["dtype"]:
            pairs = zip(base[1], results, strict=True)
            row["identical"] = sum(a.model_dump(exclude={"timings"}) == b.model_dump(exclude={"timings"})
                                   for a, b in pairs)  # fmt: skip
        same = f"; {row['identical']}/{n} results identical to the baseline's" if "identical" in row else ""
        print(f"batch {n} prompts, {row['dtype']}, {size} at a time: {row['per_hour']} prompts/h "
              f"({row['vs_baseline']}x the baseline), {row['seconds']} s, median {row['median_words']} words{same}",
              flush=True)  # fmt: skip
        rows.append(row)
    return rows


def main() -> None:
    """Run the three measurements and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--backends", default="float32,q8_0", help="RAPO_LLM_DTYPE values for the cold and warm runs.")
    parser.add_argument(
        "--batches",
        default="float32:1,float32:16,q8_0:1",
        help="DTYPE:SIZE,... (first: baseline); DTYPE vllm starts a vLLM server (scripts/vllm-local).",
    )
    parser.add_argument("--target", default="wan")
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true", help="Only the batch measurement.")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work")
    args = parser.parse_args()
    env = {**os.environ, "RAPO_HOME": os.environ.get("RAPO_HOME", str(Path.home() / ".cache" / "rapo"))}
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    result: dict = {"load_average_start": round(os.getloadavg()[0], 1)}
    if not args.skip_cold:
        result["refine"] = {d: cold_and_warm(env, args.warm_runs, d) for d in args.backends.split(",")}
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.batches.split(",")]
    result["batch"] = batches(args.prompts, configs, args.target)
    result["load_average_end"] = round(os.getloadavg()[0], 1)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "refine_speed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
