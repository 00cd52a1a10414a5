"""Benchmark the SSPO loop: where each iteration's time goes (generate, critique, LLM, everything else).

Runs `rapo optimize` in-process on VBench prompts with the tiny random Wan pipeline on the CPU, then reads
the trajectory store and splits the wall time by tool:

    .venv/bin/python bench/sspo.py                       # 5 prompts, 2 revision rounds, 2 candidates
    .venv/bin/python bench/sspo.py --prompts 10 --max-iters 4 --generator tiny-wan

The tiny generator makes noise in 0.1 s, so on CPU this measures the loop's own overhead: LLM calls,
critics, checkpointing and bookkeeping. Writes `bench/.work/sspo.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

from typer.testing import CliRunner

from agent.cli.main import app
from agent.runs.trajectory import open_run_dir

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CATEGORIES = {"generate_video": "generate", "refine_prompt": "llm", "revise_prompt": "llm"}


def main() -> None:
    """Run the benchmark and print the time split."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--max-iters", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--generator", default="tiny-wan")
    parser.add_argument("--critics", default="flow,temporal,imaging")
    parser.add_argument("--work", type=Path, default=Path("bench/.work"))
    args = parser.parse_args()

    # 1. Prompts: the first N VBench prompts
    source = SHARED / "benchmarks" / "vbench" / "prompts" / "all_dimension.txt"
    if not source.is_file():
        raise SystemExit(f"{source} not found: this benchmark reads ../shared/data")
    args.work.mkdir(parents=True, exist_ok=True)
    prompts = args.work / "sspo_prompts.txt"
    prompts.write_text("".join(line for _, line in zip(range(args.prompts), source.open(), strict=False)))
    run_dir = args.work / "sspo-run"
    shutil.rmtree(run_dir, ignore_errors=True)

    # 2. Run the loop, timed from the outside
    started = time.perf_counter()
    result = CliRunner().invoke(
        app,
        ["optimize", str(prompts), "--out", str(run_dir), "--generator", args.generator, "--critics", args.critics,
         "--max-iters", str(args.max_iters), "--candidates", str(args.candidates)],
    )  # fmt: skip
    wall = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"optimize failed: {result.output}\n{result.exception!r}")

    # 3. Split the time by tool, from the trajectory
    store, run_id = open_run_dir(run_dir)
    split: dict[str, float] = defaultdict(float)
    rounds = 0
    for row in store.prompts(run_id):
        rounds += 1 + max((e.iteration for e in store.evaluations(run_id, row.prompt_id)), default=0)
        for call in store.tool_calls(run_id, row.prompt_id):
            category = CATEGORIES.get(call.tool, "critique" if call.tool.startswith("critic_") else "other tools")
            split[category] += call.seconds
    store.close()
    accounted = sum(split.values())
    split["everything else (load, checkpoints, bookkeeping)"] = wall - accounted
    report = {
        "prompts": args.prompts, "rounds": rounds, "wall_s": round(wall, 2),
        "per_round_s": {k: round(v / rounds, 3) for k, v in split.items()},
        "share": {k: round(v / wall, 3) for k, v in split.items()},
        "generator": args.generator, "critics": args.critics,
        "max_iters": args.max_iters, "candidates": args.candidates,
    }  # fmt: skip
    (args.work / "sspo.json").write_text(json.dumps(report, indent=2))
    print(f"{args.prompts} prompts, {rounds} rounds, {wall:.1f} s wall ({wall / rounds:.2f} s per round)")
    for name, seconds in split.items():
        print(f"  {name:<50} {seconds / rounds:7.3f} s/round  {seconds / wall:6.1%}")


if __name__ == "__main__":
    main()
