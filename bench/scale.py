"""Benchmark `rapo optimize --ray`: prompts per hour with 1 and 2 generator workers, and how busy each one's GPU is.

Each worker count gets its own local Ray instance with that many logical GPUs (`ray.init(num_cpus=2,
num_gpus=N)`), its own run dir and a fresh batch of the same prompts; the workers start (pipeline and LLM loaded)
before the clock starts, so the figure is the steady rate of a long overnight batch:

    .venv/bin/python bench/scale.py                                   # 8 VBench prompts, tiny Wan, 1 and 2 workers
    .venv/bin/python bench/scale.py --prompts 16 --max-iters 1 --store postgresql://rapo@127.0.0.1:5432/rapo

GPU-busy fraction = seconds a worker spent inside pipeline calls / the batch's wall time. With the tiny random
generator on a CPU it is small: the LLM (SmolLM2 on the CPU) and the critics dominate. Writes
`bench/.work/scale.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from rapo.agent.loop.context import SSPOConfig
from rapo.agent.runs.distributed import optimize_on_ray, start_workers
from rapo.agent.runs.optimize import PromptItem, open_run
from rapo.agent.runs.run_spec import RunSpec
from rapo.graph_db.default_graph import default_graph_path
from rapo.graph_db.embeddings import Embedder

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def run_batch(prompts: list[PromptItem], workers: int, args: argparse.Namespace, graph: Path) -> dict:
    """One batch on `workers` generator workers; its rate and each worker's busy fraction."""
    import ray

    run_dir = args.work / f"scale-{workers}"
    shutil.rmtree(run_dir, ignore_errors=True)
    spec = RunSpec(
        generator=args.generator, critics=args.critics.split(","), graph=str(graph), run_dir=run_dir,
        store=args.store, config=SSPOConfig(max_iters=args.max_iters, candidates=args.candidates),
    )  # fmt: skip
    ray.init(num_cpus=2, num_gpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        info = open_run(run_dir, Path("bench"), prompts, {"bench": "scale"}, resume=False)
        started = time.perf_counter()
        actors = start_workers(spec, info.run_id, workers, 1.0)
        ray.get([a.pid.remote() for a in actors])  # started: pipeline loaded, LLM set up
        ready = time.perf_counter()
        rows = optimize_on_ray(prompts, info, spec, actors)
        wall = time.perf_counter() - ready
        stats = ray.get([a.stats.remote() for a in actors])
    finally:
        ray.shutdown()
    done = sum(r["status"] == "done" for r in rows)
    return {
        "workers": workers, "prompts": len(prompts), "done": done, "start_s": round(ready - started, 1),
        "wall_s": round(wall, 1), "prompts_per_hour": round(done / wall * 3600, 1),
        "gpu_busy": [round(s["busy_s"] / wall, 4) for s in stats],
        "videos": [s["outcomes"] for s in stats],
    }  # fmt: skip


def main() -> None:
    """Run 1 and 2 workers in turn and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-iters", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--generator", default="tiny-wan")
    parser.add_argument("--critics", default="temporal,imaging")
    parser.add_argument("--workers", default="1,2", help="Worker counts to measure, comma-separated.")
    parser.add_argument("--store", default=None, help="A postgresql:// URL; default: SQLite in each run dir.")
    parser.add_argument("--work", type=Path, default=Path("bench/.work"))
    args = parser.parse_args()

    source = SHARED / "benchmarks" / "vbench" / "prompts" / "all_dimension.txt"
    if not source.is_file():
        raise SystemExit(f"{source} not found: this benchmark reads ../shared/data")
    prompts = [PromptItem(text=line.strip()) for _, line in zip(range(args.prompts), source.open(), strict=False)]
    args.work.mkdir(parents=True, exist_ok=True)
    graph = default_graph_path(Embedder())

    results = [run_batch(prompts, int(n), args, graph) for n in args.workers.split(",")]
    (args.work / "scale.json").write_text(json.dumps(results, indent=2))
    print(f"{args.prompts} prompts, {args.generator}, {args.max_iters} revision rounds of {args.candidates} candidates")
    print(f"{'workers':>7} {'start s':>8} {'wall s':>8} {'prompts/h':>10}  GPU-busy per worker")
    for r in results:
        busy = ", ".join(f"{b:.1%}" for b in r["gpu_busy"])
        print(f"{r['workers']:>7} {r['start_s']:>8} {r['wall_s']:>8} {r['prompts_per_hour']:>10}  {busy}")


if __name__ == "__main__":
    main()
