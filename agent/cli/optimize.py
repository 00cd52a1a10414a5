"""`rapo optimize` and `rapo runs`: overnight SSPO batches and what they left behind."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table
from rich.text import Text

from rapo.agent.cli.options import (
    AdapterOpt,
    CpuOffloadOpt,
    DiscriminatorOpt,
    FramesOpt,
    GraphOpt,
    GuidanceOpt,
    HeightOpt,
    JsonOpt,
    LlmOpt,
    SeedOpt,
    StepsOpt,
    TargetOpt,
    VaeTilingOpt,
    WidthOpt,
)
from rapo.agent.runs.refine import open_graph
from rapo.agent.settings import Settings
from rapo.common import RapoError, stderr, stdout
from rapo.tools.critics.registry import CRITIC_NAMES
from rapo.tools.tiny_pipelines import TINY_SPECS

runs_app = typer.Typer(help="Inspect and export optimisation runs.", no_args_is_help=True)


def ray_flag_value(argv: list[str]) -> list[str]:
    """`argv` with a bare `--ray` (no address after it) spelled `--ray=local`: click options need a value.

    An address is `auto`, `local`, a URL (`ray://HOST:PORT`) or `HOST:PORT`; anything else after `--ray` (another
    option, the prompt file) is left to be parsed as itself.
    """
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--ray":
            following = out[i + 1] if i + 1 < len(out) else ""
            if not (following in ("auto", "local") or "://" in following or re.fullmatch(r"[\w.-]+:\d+", following)):
                out[i] = "--ray=local"
    return out


def _thresholds(items: list[str], critics: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in critics:
            raise RapoError(f"--threshold {item!r}: expected METRIC=VALUE with METRIC one of {', '.join(critics)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise RapoError(f"--threshold {item!r}: {value!r} is not a number") from None
        if not 0.0 <= out[name] <= 1.0:
            raise RapoError(f"--threshold {item!r}: scores are in [0, 1]")
    return out


def optimize_cmd(
    prompts_file: Annotated[Path, typer.Argument(help="Prompts: .txt (one per line), .jsonl, or VBench's .json.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run dir: videos, stores, best_prompts.jsonl.")],
    generator: Annotated[
        str, typer.Option(help=f"{', '.join(TINY_SPECS)} (tiny random pipelines), or a diffusers pipeline folder.")
    ] = "tiny-wan",
    critics: Annotated[
        str, typer.Option(help=f"Comma-separated, of: {', '.join(CRITIC_NAMES)}.")
    ] = "flow,temporal,imaging",
    max_iters: Annotated[int, typer.Option(help="Revision rounds after Stage 1.", min=0, max=50)] = 4,
    candidates: Annotated[int, typer.Option(help="Candidates per round.", min=1, max=16)] = 2,
    max_videos: Annotated[int, typer.Option(help="Videos per prompt at most.", min=1)] = 12,
    max_seconds: Annotated[float | None, typer.Option(help="Wall-clock budget per prompt.")] = None,
    threshold: Annotated[list[str], typer.Option(help="METRIC=VALUE that ends the loop; repeatable.")] = [],  # noqa: B006
    frames: FramesOpt = 9,
    height: HeightOpt = 64,
    width: WidthOpt = 64,
    steps: StepsOpt = 2,
    guidance: GuidanceOpt = 5.0,
    cpu_offload: CpuOffloadOpt = False,
    vae_tiling: VaeTilingOpt = False,
    graph: GraphOpt = None,
    llm: LlmOpt = None,
    adapter: AdapterOpt = None,
    target: TargetOpt = None,
    discriminator: DiscriminatorOpt = None,
    controller: Annotated[
        str, typer.Option(help="Who decides each round: policy (SSPO's rule) or llm (the --llm server, tool calling).")
    ] = "policy",
    vlm: Annotated[
        str | None,
        typer.Option(help="The vlm critic's model: openai:http://HOST:PORT/v1[#MODEL] (default: $RAPO_VLM)."),
    ] = None,
    clip: Annotated[Path | None, typer.Option(help="The clip critic's local CLIP model folder.")] = None,
    seed: SeedOpt = None,
    video_seed: Annotated[int, typer.Option(help="Seed of every video, so candidates differ only in prompt.")] = 0,
    select: Annotated[
        str, typer.Option(help="rank (lowest mean rank) or tournament (the --vlm judge compares the best pairwise).")
    ] = "rank",
    seeds: Annotated[
        int,
        typer.Option(help="Noise seeds per candidate (--video-seed, +1, ...); ranked on each.", min=1, max=16),
    ] = 1,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out where it stopped.")] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help="Fan out on Ray: alone, a local instance; `auto` or ray://HOST:PORT, a cluster (one worker per GPU).",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(help="Store and checkpoints on postgresql://USER@HOST:PORT/DB (default: SQLite in --out)."),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            help="Prompts in flight at once: their critics and LLM calls run while another's video renders "
            "(default: 2 with a real video model, 1 with a tiny one).",
            min=1,
            max=16,
        ),
    ] = None,
) -> None:
    r"""Optimise every prompt of a list with the SSPO loop: generate, critique, revise, keep the best.

    Examples:
      rapo optimize prompts.txt --out runs/tonight --generator tiny-wan
      rapo optimize prompts.txt --out runs/tonight --resume
      rapo optimize prompts.txt --out runs/tonight --overlap 2
      rapo optimize prompts.txt --out runs/served --llm openai:http://127.0.0.1:18000/v1 --controller llm
      rapo optimize vbench.json --out runs/wan --generator ~/models/Wan2.1-T2V-1.3B-Diffusers --frames 81 \\
          --height 480 --width 832 --steps 20 --threshold flow=0.6
      rapo optimize prompts.txt --out /shared/runs/tonight --ray auto --store postgresql://rapo@db:5432/rapo
    """
    # Imported here: torch, diffusers and LangGraph take seconds to import, and other commands need none of them.
    from rapo.agent.loop.context import SSPOConfig
    from rapo.agent.runs.optimize import default_overlap, open_run, optimize, read_prompt_list
    from rapo.agent.runs.refine import check_target
    from rapo.agent.runs.run_spec import RunSpec, build_context
    from rapo.agent.runs.trajectory import TrajectoryStore
    from rapo.tools.generator import GenerationParams, VideoGenerator
    from rapo.tools.stage1 import Stage1Settings

    # 1. Check everything before any work: prompts, critics, thresholds, model paths, graph, store
    settings = Settings()
    prompts = read_prompt_list(prompts_file)
    names = [c.strip() for c in critics.split(",") if c.strip()]
    if unknown := [c for c in names if c not in CRITIC_NAMES]:
        raise RapoError(f"--critics: unknown critic(s) {', '.join(unknown)}; choose from {', '.join(CRITIC_NAMES)}")
    if select not in ("rank", "tournament"):
        raise RapoError(f"--select {select!r}: choose rank or tournament")
    if max_videos < seeds:
        raise RapoError(f"--max-videos {max_videos} is less than --seeds {seeds}: no candidate could be rendered")
    if overlap is not None and ray is not None:
        raise RapoError("--overlap is for one process; with --ray each worker runs one prompt at a time")
    config = SSPOConfig(
        max_iters=max_iters, candidates=candidates, max_videos=max_videos, max_seconds=max_seconds,
        thresholds=_thresholds(threshold, names), seed=settings.seed if seed is None else seed, video_seed=video_seed,
        seeds=seeds, select=select,
        params=GenerationParams(num_frames=frames, height=height, width=width, num_inference_steps=steps,
                                guidance_scale=guidance),
    )  # fmt: skip
    graph_location, embedder = open_graph(graph, settings)
    spec = RunSpec(
        generator=generator, cpu_offload=cpu_offload, vae_tiling=vae_tiling, critics=names, config=config,
        graph=str(graph_location), llm=llm or settings.llm, llm_dtype=settings.llm_dtype,
        adapter=str(adapter) if adapter else None, discriminator=discriminator,
        stage1=Stage1Settings(target=check_target(target or settings.target), both_branches=True),
        run_dir=out, store=store, controller=controller,
        critic_options={
            name: _critic_options(name, vlm or settings.vlm, clip, llm or settings.llm)
            for name in [*names, *(["vlm"] if select == "tournament" and "vlm" not in names else [])]
        },
    )  # fmt: skip
    video_generator = VideoGenerator(generator, cpu_offload=cpu_offload, vae_tiling=vae_tiling)
    ctx = build_context(spec, generator=video_generator, embedder=embedder)  # loads no model; Ray workers their own
    record = {
        "config": config.model_dump(mode="json"), "generator": ctx.models["generator"], "critics": names,
        "controller": controller, "stage1": ctx.models["stage1"],
    }  # fmt: skip
    if store:  # reachable, and migrated, before the run starts
        opened = TrajectoryStore(store)
        record["store"] = opened.location
        opened.close()
    if ray is not None:
        from rapo.agent.runs.distributed import connect, optimize_on_ray, start_workers

        workers, gpus = connect(None if ray == "local" else ray, video_generator.real_model)
    info = open_run(out, prompts_file, prompts, record, resume)

    # 2. Run
    if ray is not None:
        rows = optimize_on_ray(prompts, info, spec, start_workers(spec, info.run_id, workers, gpus))
    else:
        rows = optimize(prompts, info, ctx, store, overlap or default_overlap(video_generator.real_model))
    done = sum(r["status"] == "done" for r in rows)
    stderr.print(f"{done}/{len(rows)} prompts done; best prompts in {out / 'best_prompts.jsonl'}", markup=False)


def _critic_options(name: str, vlm: str | None, clip: Path | None, llm: str | None) -> dict[str, str]:
    """The constructor options of a critic that needs a model; a RapoError when it was not given one.

    The physics critic's judge is the served `--llm`, else the `--vlm`; without either it applies its rules.
    """
    if name == "physics":
        from rapo.tools.llm_openai import is_endpoint_spec

        judge = llm if is_endpoint_spec(llm) else vlm
        return {"judge": judge} if judge else {}
    if name == "vlm":
        if not vlm:
            raise RapoError(
                "the VLM judge (--critics vlm, --select tournament) needs --vlm openai:http://HOST:PORT/v1[#MODEL]"
                " (or $RAPO_VLM)"
            )
        from rapo.tools.llm_openai import OpenAILLM

        judge = OpenAILLM(vlm)  # checks now that the server answers and serves the model
        return {"base_url": judge.endpoint.base_url, "model": judge.model}
    if name == "clip":
        if clip is None:
            raise RapoError("--critics clip needs --clip PATH (a local CLIP model folder)")
        return {"model_path": str(clip)}
    return {}


RunDir = Annotated[Path, typer.Argument(help="A run dir written by `rapo optimize`.")]


@runs_app.command("list")
def list_runs(run_dirs: Annotated[list[Path], typer.Argument(help="Run dirs.")]) -> None:
    """List runs with their prompt counts by status (a dir that is not a readable run shows why).

    Example:
      rapo runs list runs/*
    """
    from rapo.agent.runs.runs_view import run_summary

    table = Table()
    for column in ("run dir", "run id", "done", "failed", "running", "pending"):
        table.add_column(column)
    for index, run_dir in enumerate(run_dirs):
        summary = run_summary(index, run_dir)
        if "error" in summary:  # one unreadable dir does not hide the others
            table.add_row(str(run_dir), Text(summary["error"], style="red"), "", "", "", "")
            continue
        counts = summary["counts"]
        table.add_row(
            str(run_dir), summary["run_id"], *(str(counts.get(s, 0)) for s in ("done", "failed", "running", "pending"))
        )
    stdout.print(table)


@runs_app.command()
def show(run_dir: RunDir, as_json: JsonOpt = False) -> None:
    """Show every prompt's rounds: candidates, scores, videos, tool time and why the loop stopped.

    Examples:
      rapo runs show runs/tonight
      rapo runs show runs/tonight --json     # the data of `rapo ui`'s run page
    """
    from rapo.agent.runs.trajectory import open_run_dir

    store, run_id = open_run_dir(run_dir)
    if as_json:
        from rapo.agent.runs.runs_view import detail_json, run_detail

        store.close()
        stdout.print_json(data=detail_json(run_detail(0, run_dir)))
        return
    for row in store.prompts(run_id):
        table = Table(
            title=f"#{row.prompt_id} [{row.status}] {row.input} -> {row.best_prompt} ({row.stop_reason or row.error})"
        )
        evaluations = store.evaluations(run_id, row.prompt_id)
        metrics = sorted({m for e in evaluations for m in e.scores})
        calls = store.tool_calls(run_id, row.prompt_id)
        table.caption = f"{len(calls)} tool calls, {sum(c.seconds for c in calls):.2f} s" + "".join(
            f"\n{key}: {value}" for key, value in sorted(row.meta.items())
        )
        for column in ("round", "#", "prompt", *metrics, "video", "best"):
            table.add_column(column)
        for e in evaluations:
            best = "*" if e.prompt == row.best_prompt and e.scores == (row.best_scores or {}) else ""
            table.add_row(
                str(e.iteration),
                str(e.index),
                e.prompt,
                *(f"{e.scores.get(m, float('nan')):.3f}" for m in metrics),
                e.video or e.error or "",
                best,
            )
        stdout.print(table)
    store.close()


@runs_app.command()
def export(
    run_dir: RunDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    format_: Annotated[
        Literal["jsonl", "vbench"],
        typer.Option("--format", help="jsonl: one JSON object a prompt; vbench: one prompt a line (VBench's .txt)."),
    ] = "jsonl",
) -> None:
    """Write the best prompt of every prompt, one line each, in input order.

    A prompt with no best prompt (failed or not done) is written as its input in `vbench` format, so that
    line N is always prompt N; the command says how many.

    Examples:
      rapo runs export runs/tonight --out best.jsonl
      rapo runs export runs/tonight --out best.txt --format vbench
    """
    from rapo.agent.runs.trajectory import open_run_dir

    store, run_id = open_run_dir(run_dir)
    rows = store.prompts(run_id)
    store.close()
    if format_ == "jsonl":
        lines = [r.model_dump_json() for r in rows]
    else:
        lines = [" ".join((r.best_prompt or r.input).split()) for r in rows]  # one line each, whatever the LLM wrote
    partial = out.with_name(out.name + ".partial")
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    partial.replace(out)
    missing = sum(r.best_prompt is None for r in rows)
    note = f" ({missing} without a best prompt: written as their input)" if missing and format_ == "vbench" else ""
    stderr.print(f"wrote {len(rows)} prompts to {out}{note}", markup=False)
