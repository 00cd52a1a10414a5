"""Where `rapo refine`'s seconds go, cold and warm, and prompts per hour of a --file batch, batched and one at a time.

    .venv/bin/python bench/refine_speed.py                       # the default models, 16 VBench prompts
    .venv/bin/python bench/refine_speed.py --prompts 32 --dtype float32 --batch 8

1. Cold: `rapo refine --local PROMPT` as a subprocess (imports, model loads, the LLM calls), twice; the second is the
   one a person waits for once caches are built.
2. Warm: a `rapo serve` started once, then `rapo refine PROMPT` three times (the client imports no torch).
3. Batch: the same Stage 1 pipeline, loaded once in this process, over --prompts prompts (VBench's, or built-in ones
   without ../shared/data): one at a time (`Stage1.run`, what `rapo refine --file` did) and --batch at a time
   (`Stage1.run_many`), in the same run, same seed; reports prompts/hour of each, their ratio, and how many results
   are identical (all of them in float32).

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

RAPO = [sys.executable, "-m", "agent"]
PROMPT = "a dog running on the beach"


def wall(args: list[str], env: dict) -> tuple[float, str]:
    """Seconds a `rapo` subprocess takes, and its stdout."""
    started = time.perf_counter()
    proc = subprocess.run([*RAPO, *args], capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"rapo {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def cold_and_warm(env: dict, runs: int) -> dict:
    """Cold (--local) and warm (through `rapo serve`) wall times of one refine, in seconds."""
    cold = [wall(["refine", "--local", "--json", PROMPT], env) for _ in range(2)]
    for seconds, out in cold:
        print(f"cold  rapo refine --local: {seconds:6.1f} s wall; timings {json.loads(out)['timings']}", flush=True)
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
        print(f"warm  rapo refine (served): {seconds:6.1f} s wall; timings {json.loads(out)['timings']}", flush=True)
    return {"cold_s": [round(s, 2) for s, _ in cold], "warm_s": [round(s, 2) for s, _ in warm],
            "warm_median_s": round(statistics.median(s for s, _ in warm), 2)}  # fmt: skip


def batch(n: int, size: int, dtype: str, target: str) -> dict:
    """Prompts/hour of Stage 1 over `n` prompts, one at a time and `size` at a time, in this process."""
    from agent.runs.refine import open_graph, stage1_pipeline
    from agent.settings import Settings
    from tools.stage1 import Stage1Settings

    settings = Settings()
    pipeline = stage1_pipeline(open_graph(None, settings), settings.llm, dtype, Stage1Settings(target=target))
    pipeline.load()
    texts = vbench_prompts(n)
    started = time.perf_counter()
    alone = [pipeline.run(p, 0) for p in texts]
    single_s = time.perf_counter() - started
    started = time.perf_counter()
    together = [r for i in range(0, n, size) for r in pipeline.run_many(texts[i : i + size], 0)]
    batched_s = time.perf_counter() - started
    pairs = zip(alone, together, strict=True)
    same = sum(a.model_dump(exclude={"timings"}) == b.model_dump(exclude={"timings"}) for a, b in pairs)
    row = {"prompts": n, "batch": size, "dtype": pipeline.llm.dtype, "target": target,
           "single_per_hour": round(n / single_s * 3600), "batched_per_hour": round(n / batched_s * 3600),
           "speedup": round(single_s / batched_s, 2), "identical": same}  # fmt: skip
    print(f"batch {n} prompts, {row['dtype']}, target {target}: one at a time {row['single_per_hour']} prompts/h; "
          f"{size} at a time {row['batched_per_hour']} prompts/h ({row['speedup']}x); {same}/{n} results identical",
          flush=True)  # fmt: skip
    return row


def main() -> None:
    """Run the three measurements and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", default="float32", help="The LLM's dtype in the batch measurement.")
    parser.add_argument("--target", default="wan")
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true", help="Only the batch measurement.")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work")
    args = parser.parse_args()
    env = {**os.environ, "RAPO_HOME": os.environ.get("RAPO_HOME", str(Path.home() / ".cache" / "rapo"))}
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    result = {} if args.skip_cold else cold_and_warm(env, args.warm_runs)
    result["batch"] = batch(args.prompts, args.batch, args.dtype, args.target)
    result["load_average_end"] = round(os.getloadavg()[0], 1)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "refine_speed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
