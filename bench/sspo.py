"""Benchmark the SSPO loop: where each iteration's time goes, and how busy the generator is with `--overlap`.

Time split: runs `rapo optimize` in-process on VBench prompts with the tiny random Wan pipeline on the CPU, then
reads the trajectory store and splits the wall time by tool:

    .venv/bin/python bench/sspo.py                       # 5 prompts, 2 revision rounds, 2 candidates
    .venv/bin/python bench/sspo.py --prompts 10 --max-iters 4 --generator tiny-wan

The tiny generator makes noise in 0.1 s, so on CPU this measures the loop's own overhead: LLM calls,
critics, checkpointing and bookkeeping. Writes `bench/.work/sspo.json`.

Generator busy fraction: the same batch at `--overlap 1` and at `--overlap N`, one after the other in this
process, with a stand-in for a GPU generator whose every pipeline call takes `--render-seconds` (a sleep, which
holds no CPU core, and a smooth moving pattern as the video) while the real critics score its videos and the real
LLM writes Stage 1 and the revisions. Busy = seconds inside pipeline calls / wall time of the batch (models loaded
before the clock starts). Writes `bench/.work/sspo_overlap.json`:

    .venv/bin/python bench/sspo.py --overlap 2 --render-seconds 10 --prompts 6 --target short
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import zlib
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from typer.testing import CliRunner

from rapo.agent.cli.main import app
from rapo.agent.runs.trajectory import open_run_dir
from rapo.tools.generator import VideoGenerator

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CATEGORIES = {"generate_video": "generate", "refine_prompt": "llm", "revise_prompt": "llm"}


class StandInPipeline:
    """A stand-in for a GPU pipeline: every call takes `render_seconds` and returns a smooth moving pattern.

    The time is a sleep, so the stand-in holds no CPU core, as a GPU render holds none; the pattern (a phase from
    the prompt and the seed) gives the critics motion to measure and encodes fast. `calls` holds each call's
    (start, end) in `time.perf_counter()` seconds.
    """

    def __init__(self, render_seconds: float) -> None:
        self.render_seconds = render_seconds
        self.calls: list[tuple[float, float]] = []

    def __call__(  # noqa: D102 - a pipeline's __call__
        self, prompt: str, num_frames: int, height: int, width: int, generator: Any, **_: Any
    ) -> SimpleNamespace:
        started = time.perf_counter()
        phase = zlib.crc32(f"{prompt}:{generator.initial_seed()}".encode()) % 360
        t = np.arange(num_frames, dtype=np.float32)[:, None, None]  # (F, 1, 1)
        y = np.arange(height, dtype=np.float32)[None, :, None]  # (1, H, 1)
        x = np.arange(width, dtype=np.float32)[None, None, :]  # (1, 1, W)
        wave = 127 + 100 * np.sin((x + 3 * t + phase) / 23.0) * np.cos((y - 2 * t) / 31.0)  # (F, H, W)
        frames = np.stack([wave, np.roll(wave, 5, axis=2), 255 - wave], axis=-1).astype(np.uint8)  # (F, H, W, 3)
        time.sleep(max(0.0, self.render_seconds - (time.perf_counter() - started)))
        self.calls.append((started, time.perf_counter()))
        return SimpleNamespace(frames=[frames])

    @property
    def busy_seconds(self) -> float:
        """Seconds spent inside pipeline calls."""
        return sum(end - start for start, end in self.calls)


class StandInGenerator(VideoGenerator):
    """`VideoGenerator` (its cache, locks and audit log) driving a `StandInPipeline` instead of a diffusers one."""

    def __init__(self, render_seconds: float) -> None:
        super().__init__("tiny-wan")  # a valid spec; load() never builds it
        self.model_id = f"stand-in-gpu-{render_seconds:g}s"
        self.pipeline = StandInPipeline(render_seconds)

    def load(self) -> None:
        """Install the stand-in (its call takes the common argument names: `FALLBACK`)."""
        with self._lock:
            if self._pipe is None:
                self._pipe, self.device, self.dtype = self.pipeline, "cpu", "float32"


def main() -> None:
    """Run the benchmark and print the time split, or the generator's busy fraction with `--overlap`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--max-iters", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--generator", default="tiny-wan")
    parser.add_argument("--critics", default="flow,temporal,imaging")
    parser.add_argument("--work", type=Path, default=Path("bench/.work"))
    parser.add_argument("--overlap", type=int, default=None, help="Measure the busy fraction at 1 and at this.")
    parser.add_argument("--render-seconds", type=float, default=10.0, help="The stand-in's time per video.")
    parser.add_argument("--frames", type=int, default=9, help="The stand-in's videos: frames (the critics read them).")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--critic-seconds", type=float, default=4.0, help="Stand-in critic cost a video.")
    parser.add_argument("--revise-seconds", type=float, default=3.0, help="Stand-in reviser's time a revision.")
    args = parser.parse_args()

    # 1. Prompts: the first N VBench prompts
    source = SHARED / "benchmarks" / "vbench" / "prompts" / "all_dimension.txt"
    if not source.is_file():
        raise SystemExit(f"{source} not found: this benchmark reads ../shared/data")
    args.work.mkdir(parents=True, exist_ok=True)
    prompts = args.work / "sspo_prompts.txt"
    prompts.write_text("".join(line for _, line in zip(range(args.prompts), source.open(), strict=False)))
    if args.overlap is not None:
        busy_benchmark(args, prompts)
        return
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


class StandInReviser:
    """The reviser's stand-in: `k` new candidates (the prompt, numbered variations) after `seconds` of waiting.

    One revision at a time, as the local LLM samples one chat at a time (`tools/llm.py` `_SAMPLING`); the wait
    holds no CPU core, as a served LLM's answer holds none.
    """

    _lock = threading.Lock()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def revise(  # noqa: D102 - PromptReviser.revise's signature
        self, original: str, history: list, k: int, seed: int, instructions: str = "", meta: Any = None
    ) -> tuple[list[str], list]:
        with self._lock:
            time.sleep(self.seconds)
        return [f"{original}, variation {len(history) + i}" for i in range(k)], []


def with_cost(tool: Any, seconds: float) -> Any:
    """`tool` that first waits `seconds`: a critic's stated stand-in cost.

    A wait, as a critic on a core of its own looks to the other threads: OpenCV releases the GIL while it computes.
    """
    from langchain_core.tools import StructuredTool

    def run(**kwargs: Any) -> Any:
        time.sleep(seconds)
        return tool.invoke(kwargs)

    return StructuredTool.from_function(
        func=run, name=tool.name, description=tool.description, args_schema=tool.args_schema
    )


def busy_benchmark(args: argparse.Namespace, prompts_file: Path) -> None:
    """The batch at overlap 1 and at `args.overlap` with the stand-ins; prints the busy fractions."""
    from rapo.agent.loop.context import SSPOConfig
    from rapo.agent.runs.optimize import open_run, optimize, read_prompt_list
    from rapo.agent.runs.refine import open_graph, stage1_pipeline
    from rapo.agent.runs.run_spec import RunSpec, build_context
    from rapo.agent.settings import Settings

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's `tests`
    from rapo.tools.generator import GenerationParams
    from rapo.tools.stage1 import Stage1Settings
    from tests.tiny_llm import save_tiny_llm

    # 1. Stage 1 with the tiny random LLM (its answers fail the guards: Stage 1 keeps the prompt), loaded once
    settings = Settings()
    stage1_settings = Stage1Settings(target="short", both_branches=True)
    tiny_llm = save_tiny_llm(args.work / "tiny-llm")
    stage1 = stage1_pipeline(open_graph(None, settings), str(tiny_llm), "float32", stage1_settings)
    stage1.load()
    critics = [c for c in args.critics.split(",") if c]
    config = SSPOConfig(
        max_iters=args.max_iters, candidates=args.candidates, seed=settings.seed,
        params=GenerationParams(num_frames=args.frames, height=args.height, width=args.width),
    )  # fmt: skip
    items = read_prompt_list(prompts_file)

    # 2. The same batch at each overlap, from an empty run dir
    results = []
    load = [os.getloadavg()[0]]
    for overlap in sorted({1, args.overlap}):
        run_dir = args.work / f"sspo-overlap{overlap}"
        shutil.rmtree(run_dir, ignore_errors=True)
        generator = StandInGenerator(args.render_seconds)
        spec = RunSpec(generator="tiny-wan", critics=critics, config=config, run_dir=run_dir, stage1=stage1_settings)
        ctx = build_context(spec, stage1=stage1, generator=generator)
        ctx.reviser = StandInReviser(args.revise_seconds)
        first = f"critic_{critics[0]}"  # the stand-in cost once per video
        ctx.tools[first] = with_cost(ctx.tools[first], args.critic_seconds)
        info = open_run(run_dir, prompts_file, items, {"overlap": overlap}, resume=False)
        started = time.perf_counter()
        rows = optimize(items, info, ctx, overlap=overlap)
        wall = time.perf_counter() - started
        load.append(os.getloadavg()[0])
        store, run_id = open_run_dir(run_dir)
        calls = [c for r in rows for c in store.tool_calls(run_id, r["prompt_id"])]
        store.close()
        pipe = generator.pipeline
        results.append({
            "overlap": overlap, "wall_s": round(wall, 1), "videos": len(pipe.calls),
            "pipeline_s": round(pipe.busy_seconds, 1), "busy": round(pipe.busy_seconds / wall, 4),
            "prompts_per_hour": round(len(rows) * 3600 / wall, 1),
            "critics_s_per_video": round(sum(c.seconds for c in calls if "critic_" in c.tool) / len(pipe.calls), 2),
            "done": sum(r["status"] == "done" for r in rows),
            "best": [(r["best_prompt"], r["best_scores"]) for r in rows],
        })  # fmt: skip

    # 3. Report, each figure beside the overlap-1 baseline of this run
    same = all(r["best"] == results[0]["best"] for r in results)
    report = {
        "stand_in": f"a stand-in for a GPU generator: each pipeline call sleeps {args.render_seconds:g} s",
        "video": f"{args.frames} frames, {args.width}x{args.height}",
        "critics": f"{args.critics}, real, plus a stand-in {args.critic_seconds:g} s a video",
        "reviser": f"a stand-in: {args.revise_seconds:g} s a revision, one at a time",
        "stage1": "the tiny random LLM (keeps the prompt)", "prompts": len(items), "max_iters": args.max_iters,
        "candidates": args.candidates, "cpu_cores": os.cpu_count(), "load_average_1min": load,
        "same_best_prompts_and_scores": same, "runs": [{k: v for k, v in r.items() if k != "best"} for r in results],
    }  # fmt: skip
    (args.work / "sspo_overlap.json").write_text(json.dumps(report, indent=2))
    print(f"{report['stand_in']} (no GPU here); videos {report['video']}")
    print(f"critics {report['critics']}; reviser {report['reviser']}; Stage 1 {report['stage1']}")
    print(f"{len(items)} prompts, {args.max_iters} revision rounds, {args.candidates} candidates; "
          f"{os.cpu_count()} CPU cores, load average {' -> '.join(f'{x:.1f}' for x in load)}")  # fmt: skip
    print(f"{'overlap':>7} {'wall s':>8} {'videos':>6} {'in pipeline s':>13} {'busy':>7} {'prompts/h':>9} "
          f"{'critics s/video':>15}")  # fmt: skip
    for r in results:
        print(f"{r['overlap']:>7} {r['wall_s']:>8.1f} {r['videos']:>6} {r['pipeline_s']:>13.1f} {r['busy']:>7.1%} "
              f"{r['prompts_per_hour']:>9.1f} {r['critics_s_per_video']:>15.2f}")  # fmt: skip
    print(f"best prompts and scores the same at every overlap: {same}")


if __name__ == "__main__":
    main()
