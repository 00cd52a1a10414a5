"""`rapo eval`: a run's prompts rendered in a benchmark's layout, and the benchmark's scores by round."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rapo.agent.cli.options import (
    CpuOffloadOpt,
    FramesOpt,
    GraphOpt,
    GuidanceOpt,
    HeightOpt,
    LlmOpt,
    StepsOpt,
    TargetOpt,
    VaeTilingOpt,
    WidthOpt,
)
from rapo.common import RapoError, stderr, stdout
from rapo.tools.tiny_pipelines import TINY_SPECS

eval_app = typer.Typer(help="Benchmark samples and scores: the paper's tables, from one run.", no_args_is_help=True)

BenchArg = Annotated[str, typer.Argument(help="vbench, t2v-compbench, phygenbench or videophy.")]


@eval_app.command("sample")
def sample_cmd(
    bench: BenchArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The run dir: optimized here first if not done yet.")],
    prompts: Annotated[
        Path | None,
        typer.Option(
            help="The benchmark's prompts (VBench's VBench_full_info.json keeps each prompt's dimensions); "
            "not needed when --out holds a finished run."
        ),  # fmt: skip
    ] = None,
    generator: Annotated[
        str, typer.Option(help=f"{', '.join(TINY_SPECS)} (tiny random pipelines), or a diffusers pipeline folder.")
    ] = "tiny-wan",
    rounds: Annotated[str, typer.Option(help="SSPO rounds whose best prompt is rendered, e.g. 0,2,4.")] = "0,2,4",
    seeds: Annotated[
        int | None, typer.Option(help="Videos per prompt and variant (default: vbench 5, others 1).", min=1, max=100)
    ] = None,
    seed_base: Annotated[int, typer.Option(help="Video i of a prompt uses seed SEED_BASE + i.", min=0)] = 0,
    frames: FramesOpt = 9,
    height: HeightOpt = 64,
    width: WidthOpt = 64,
    steps: StepsOpt = 2,
    guidance: GuidanceOpt = 5.0,
    cpu_offload: CpuOffloadOpt = False,
    vae_tiling: VaeTilingOpt = False,
    critics: Annotated[str, typer.Option(help="The loop's critics, when it runs here.")] = "flow,temporal,imaging",
    graph: GraphOpt = None,
    llm: LlmOpt = None,
    target: TargetOpt = None,
) -> None:
    r"""Render prompts as given, as Stage 1 chose them and as SSPO's best by each of --rounds, for a benchmark.

    The videos go where the benchmark's evaluator reads them. Resumable (run it again after a crash); no video is
    made twice.

    Examples:
      rapo eval sample vbench --prompts VBench_full_info.json --out runs/vbench --rounds 0,2,4
      rapo eval sample vbench --out runs/wan --generator ~/models/Wan2.1-T2V-1.3B-Diffusers --frames 81 \\
          --height 480 --width 832 --steps 20
    """
    from rapo.agent.cli.optimize import optimize_cmd
    from rapo.agent.runs.eval_layouts import check_bench
    from rapo.agent.runs.evaluation import parse_rounds, sample
    from rapo.tools.generator import GenerationParams, VideoGenerator

    # 1. Check the input, then make sure the run is there: optimize (or resume) it with the same video settings
    check_bench(bench)
    wanted = parse_rounds(rounds)
    params = GenerationParams(num_frames=frames, height=height, width=width, num_inference_steps=steps,
                              guidance_scale=guidance)  # fmt: skip
    video_generator = VideoGenerator(generator, cpu_offload=cpu_offload, vae_tiling=vae_tiling)
    prompts = prompts or _recorded_prompts(out)
    if not _finished(out):
        optimize_cmd(
            prompts_file=prompts, out=out, generator=generator, critics=critics, max_iters=max(wanted, default=0),
            frames=frames, height=height, width=width, steps=steps, guidance=guidance, cpu_offload=cpu_offload,
            vae_tiling=vae_tiling, graph=graph, llm=llm, target=target, video_seed=seed_base,
            resume=(out / "run.json").is_file(),
        )  # fmt: skip

    # 2. Render the variants into the benchmark's layout
    report = sample(bench, out, video_generator, params, wanted, seeds, seed_base)
    stderr.print(
        f"{report.made} videos made, {report.cached} from the cache, {report.missing} missing (see samples.jsonl), "
        f"{report.failed} failed; {bench} layout in {report.folder}",
        markup=False,
    )


@eval_app.command("score")
def score_cmd(
    bench: BenchArg,
    run_dir: Annotated[Path, typer.Argument(help="The run dir that `rapo eval sample` wrote.")],
    evaluator: Annotated[
        str | None,
        typer.Option(
            help="MODULE:FUNCTION or FILE.py:FUNCTION called as f(bench, folder, group, samples) -> score; "
            "default: the benchmark's own evaluator (VBench's `vbench` package)."
        ),  # fmt: skip
    ] = None,
    device: Annotated[str | None, typer.Option(help="The evaluator's device (default: cuda when there is one).")] = (
        None
    ),
) -> None:
    """Score every folder of a sample with the benchmark's evaluator: a table by group and round, and a plot.

    Examples:
      rapo eval score vbench runs/vbench
      rapo eval score vbench runs/vbench --evaluator my_metrics.py:score
    """
    from rapo.agent.runs.evaluation import load_evaluator, mean_row, plot, read_sample, score

    folder, _, _ = read_sample(bench, run_dir)  # before the evaluator: a missing sample is the first thing to say
    table = score(bench, run_dir, load_evaluator(bench, evaluator, folder, device))
    png = plot(table, folder / "scores.png")
    view = Table(title=f"{bench}: score by group and round ({run_dir})")
    view.add_column("group")
    for variant in table.variants:
        view.add_column(variant, justify="right")
    for group in [*table.groups, "mean"]:
        row = mean_row(table) if group == "mean" else table.table.get(group, {})
        view.add_row(group, *(f"{row[v]:.4f}" if v in row else "-" for v in table.variants))
    stdout.print(view)
    stderr.print(f"scores in {folder / 'scores.json'} and scores.csv; plot in {png}", markup=False)


def _recorded_prompts(run_dir: Path) -> Path:
    """The prompt file a run in `run_dir` was started with; a RapoError when there is no run to read it from."""
    info = run_dir / "run.json"
    if not info.is_file():
        raise RapoError(f"--prompts is needed: {run_dir} holds no run yet")
    return Path(json.loads(info.read_text(encoding="utf-8"))["prompts_file"])


def _finished(run_dir: Path) -> bool:
    """Whether `run_dir` holds a run whose every prompt is done (nothing to optimize before sampling)."""
    if not (run_dir / "run.json").is_file():
        return False
    from rapo.agent.runs.trajectory import open_run_dir

    store, run_id = open_run_dir(run_dir)
    try:
        return all(row.status == "done" for row in store.prompts(run_id))
    finally:
        store.close()
