"""The `rapo` command line. Commands only wire options to library functions; one place maps errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rapo.agent.cli.chat import chat_cmd
from rapo.agent.cli.eval import eval_app
from rapo.agent.cli.finetune import finetune_app
from rapo.agent.cli.graph import graph_app
from rapo.agent.cli.optimize import optimize_cmd, ray_flag_value, runs_app
from rapo.agent.cli.options import AdapterOpt, DiscriminatorOpt, GraphOpt, LlmOpt, LocalOpt, SeedOpt, TargetOpt
from rapo.agent.cli.serve import serve_cmd
from rapo.agent.cli.ui import ui_cmd
from rapo.agent.runs.refine import check_target, open_graph, read_prompts, refine_file, served_stage1, stage1_pipeline
from rapo.agent.settings import Settings
from rapo.common import RapoError, quiet_libraries, stderr, stdout
from rapo.tools.stage1 import Stage1Settings, check_prompt

app = typer.Typer(
    help="rapo: turn short text-to-video prompts into prompts that make better videos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(graph_app, name="graph")
app.add_typer(runs_app, name="runs")
app.command("optimize")(optimize_cmd)
app.add_typer(finetune_app, name="finetune")
app.add_typer(eval_app, name="eval")
app.command("chat")(chat_cmd)
app.command("ui")(ui_cmd)
app.command("serve")(serve_cmd)


@app.command()
def refine(
    prompt: Annotated[str | None, typer.Argument(help="The prompt to optimise.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read one prompt per line; write JSONL.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="JSONL output for --file (default stdout); resumable.")
    ] = None,
    graph: GraphOpt = None,
    llm: LlmOpt = None,
    adapter: AdapterOpt = None,
    seed: SeedOpt = None,
    top_k: Annotated[int, typer.Option(help="Scenes to expand.", min=1, max=50)] = 3,
    threshold: Annotated[float, typer.Option(help="Minimum modifier-prompt cosine similarity.")] = 0.5,
    max_modifiers: Annotated[int, typer.Option(help="Modifiers to merge, at most one per kind.", min=0)] = 3,
    weave_boost: Annotated[
        float,
        typer.Option(
            help="With the distilled rewriter: the logit added to each modifier word its answer has not written yet "
            "(0 turns the nudge off).",
            min=0,
            max=10,
        ),
    ] = Stage1Settings.model_fields["weave_boost"].default,
    verify: Annotated[
        bool,
        typer.Option(
            help="Keep only the added sentences the verifier passes (the prompt unchanged when none does); "
            "--no-verify keeps whatever the guards pass."
        ),
    ] = True,
    target: TargetOpt = None,
    discriminator: DiscriminatorOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as one JSON object.")] = False,
    batch: Annotated[
        int | None,
        typer.Option(
            help="--file prompts put through Stage 1 together (default: a served LLM's concurrency, 16 for a local "
            "float32 model, else 1).",
            min=1,
            max=64,
        ),
    ] = None,
    local: LocalOpt = False,
) -> None:
    """Optimise a prompt with Stage 1 (retrieval, merge, refactor, verified additions, discriminator).

    Examples:
      rapo refine "a dog running on the beach"
      rapo refine --json --seed 3 "a red car at night"
      rapo refine --file prompts.txt --out refined.jsonl
      rapo refine --target short "a red car at night"
      rapo refine --adapter none "a red car at night"        # the plain model's merge/refactor pipeline
      rapo refine --adapter adapters/mine "a red car at night"

    With a `rapo serve` running with the same graph, LLM, adapter and discriminator, the server answers (no model
    load here); --local loads them here anyway.
    """
    settings = Settings()
    if (prompt is None) == (file is None):
        raise RapoError("give either a PROMPT or --file FILE")
    # Check the input before opening graphs and models, so that bad input fails in a fraction of a second.
    prompts = read_prompts(file) if file else None
    if prompt is not None:
        check_prompt(prompt)
    stage1 = Stage1Settings(
        top_k=top_k, threshold=threshold, max_modifiers=max_modifiers, weave_boost=weave_boost, verify=verify,
        target=check_target(target or settings.target),
    )  # fmt: skip
    location = open_graph(graph, settings)
    llm = llm or settings.llm
    served = None if local else served_stage1(location[0], llm, adapter, discriminator, settings.llm_dtype, stage1)
    pipeline = served or stage1_pipeline(location, llm, settings.llm_dtype, stage1, adapter, discriminator)
    seed = settings.seed if seed is None else seed
    if prompts is None:
        result = pipeline.run(prompt, seed)
        stdout.print_json(result.model_dump_json()) if as_json else typer.echo(result.prompt)
        return
    refine_file(pipeline, prompts, out, seed, batch)


def main() -> None:
    """Entry point: run the app, turning user-fixable errors into one line on stderr and exit code 2."""
    settings = Settings()
    quiet_libraries()
    try:
        app(ray_flag_value(sys.argv[1:]))
    except RapoError as exc:
        if settings.debug:
            raise
        stderr.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        stderr.print("interrupted", markup=False)
        sys.exit(130)
