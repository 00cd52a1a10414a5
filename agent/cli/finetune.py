"""`rapo finetune`: distil optimised trajectories into a LoRA rewriter (dataset, train, eval)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from rapo.agent.cli.options import JsonOpt
from rapo.agent.settings import Settings
from rapo.common import stdout
from rapo.tools.llm_openai import is_endpoint_spec

finetune_app = typer.Typer(help="Distil optimised prompts into a small LoRA rewriter.", no_args_is_help=True)

BaseOpt = Annotated[
    str | None,
    typer.Option(
        "--base", help="Base causal LM folder (default: $RAPO_LLM when it is a folder, else SmolLM2-135M-Instruct)."
    ),
]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Dataset folder from `rapo finetune dataset`.")]


@finetune_app.command()
def dataset(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write (train.jsonl, val.jsonl).")],
    runs: Annotated[list[Path], typer.Option("--runs", help="Run dirs from `rapo optimize`; repeatable.")] = [],  # noqa: B006
    pairs: Annotated[
        tuple[Path, Path] | None, typer.Option("--pairs", help="SHORT_FILE LONG_FILE: line-aligned prompt files.")
    ] = None,
    margin: Annotated[float, typer.Option(help="Least gain in mean score of best over first candidate.")] = 0.01,
    val_fraction: Annotated[float, typer.Option(help="Share of prompts held out for eval.", min=0.0, max=0.9)] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the train/val split.")] = 0,
    min_faithfulness: Annotated[
        float, typer.Option(help="Keep pairs whose target keeps this share of the input's content words.", min=0, max=1)
    ] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Make (user prompt → best prompt) training pairs from trajectories or short/long prompt files.

    Examples:
      rapo finetune dataset --runs runs/tonight --runs runs/wan --out data/mine
      rapo finetune dataset --pairs all_dimension.txt all_dimension_longer.txt --out data/vbench
    """
    from rapo.agent.runs.training_pairs import pairs_from_runs
    from rapo.finetune.dataset import build_dataset

    summary = build_dataset(
        out, pairs_from_runs(runs, margin), pairs=pairs, val_fraction=val_fraction, seed=seed,
        min_faithfulness=min_faithfulness,
    )  # fmt: skip
    if as_json:
        stdout.print_json(summary.model_dump_json())
        return
    stdout.print(
        f"{summary.counts['train']} train, {summary.counts['val']} val pairs in {out}"
        + (f"; skipped {summary.skipped}" if summary.skipped else ""),
        markup=False,
    )


@finetune_app.command()
def train(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Adapter folder to write.")],
    base: BaseOpt = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps.", min=1)] = 200,
    batch_size: Annotated[int, typer.Option(help="Examples per step.", min=1)] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-4,
    rank: Annotated[int, typer.Option(help="LoRA rank.", min=1)] = 8,
    max_len: Annotated[int, typer.Option(help="Tokens per example.", min=16)] = 128,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps.", min=1)] = 50,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, dropout and data order.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in --out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA adapter (r=8 on q/k/v/o by default) on a dataset's train split.

    Examples:
      rapo finetune train --data data/mine --out adapters/mine
      rapo finetune train --data data/mine --out adapters/mine --base ~/models/Qwen2.5-0.5B-Instruct --steps 500
      rapo finetune train --data data/mine --out adapters/mine --steps 400 --resume
    """
    from rapo.finetune.train import TrainConfig
    from rapo.finetune.train import train as run_training

    config = TrainConfig(
        data=str(data), out=str(out), base=_base(base), steps=steps, batch_size=batch_size, lr=lr, rank=rank,
        alpha=2 * rank, max_len=max_len, save_every=save_every, seed=seed,
    )  # fmt: skip
    result = run_training(config, resume=resume)
    if as_json:
        stdout.print_json(json.dumps(result.__dict__))
        return
    stdout.print(
        f"adapter in {result.adapter}: {result.steps} steps, loss {result.train_loss}, "
        f"{result.steps_per_second:.3f} steps/s",
        markup=False,
    )


@finetune_app.command("eval")
def eval_cmd(
    adapter: Annotated[Path, typer.Option("--adapter", "-a", help="Adapter folder from `rapo finetune train`.")],
    data: DataOpt,
    base: BaseOpt = None,
    report: Annotated[Path | None, typer.Option(help="JSON report (default: ADAPTER/eval.json).")] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N val pairs.", min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare the base model and base + adapter on the val split.

    Examples:
      rapo finetune eval --adapter adapters/mine --data data/mine
      rapo finetune eval --adapter adapters/mine --data data/mine --limit 20 --json
    """
    from rapo.finetune.evaluate import evaluate, write_report

    result = evaluate(adapter, data, base=_base(base), limit=limit)
    write_report(result, report or adapter / "eval.json")
    if as_json:
        stdout.print_json(json.dumps(result.means))
        return
    stdout.print(eval_table(result))


@finetune_app.command("discriminator")
def discriminator_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the discriminator to.")],
    runs: Annotated[list[Path], typer.Option("--runs", help="Run dirs from `rapo optimize`; repeatable.")],
    kind: Annotated[
        Literal["logistic", "lora"],
        typer.Option(help="logistic: MiniLM features, seconds; lora: a LoRA on the LLM that answers A or B."),
    ] = "logistic",
    val_fraction: Annotated[float, typer.Option(help="Share of prompts held out.", min=0.0, max=0.9)] = 0.2,
    l2: Annotated[float, typer.Option(help="logistic: L2 penalty on the weights.", min=0.0)] = 0.01,
    base: BaseOpt = None,
    steps: Annotated[int, typer.Option(help="lora: optimizer steps.", min=1)] = 100,
    batch_size: Annotated[int, typer.Option(help="lora: pair orders per step.", min=1)] = 4,
    lr: Annotated[float, typer.Option(help="lora: peak learning rate.")] = 2e-4,
    max_len: Annotated[int, typer.Option(help="lora: tokens per pair order; longer ones are left out.", min=16)] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the train/val split (and of the LoRA's training).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Learn Stage 1's discriminator from SSPO round 0 (both branches rendered, the critics' verdict).

    Examples:
      rapo finetune discriminator --runs runs/wan --out discriminators/wan
      rapo finetune discriminator --runs runs/wan --kind lora --steps 200 --out discriminators/lora
      rapo refine --discriminator discriminators/wan "a dog running on the beach"
    """
    from rapo.agent.runs.training_pairs import branch_pairs
    from rapo.finetune.discriminator import train_discriminator
    from rapo.finetune.train import TrainConfig

    lora = TrainConfig(base=_base(base), steps=steps, batch_size=batch_size, lr=lr, max_len=max_len)
    found = branch_pairs(runs)
    report = train_discriminator(found, out, val_fraction=val_fraction, l2=l2, seed=seed, kind=kind, lora=lora)
    if as_json:
        stdout.print_json(report.model_dump_json())
        return

    def pct(value: float | None) -> str:
        return "n/a (no val pairs)" if value is None else f"{value:.1%}"

    stdout.print(
        f"{out} ({report.kind}): {report.pairs} pairs ({report.train} train, {report.val} val; "
        f"skipped {report.skipped}); "
        f"held-out accuracy {pct(report.val_accuracy)}, hand formula {pct(report.hand_val_accuracy)}",
        markup=False,
    )


def _base(base: str | None) -> str | None:
    """`--base`, else `$RAPO_LLM` when it names a local folder (a served model is not trained here), else None."""
    env = Settings().llm
    return base or (env if env and not is_endpoint_spec(env) else None)


def eval_table(report) -> Table:  # noqa: ANN001 - finetune.evaluate is imported lazily
    """The base-vs-adapter means as a rich table."""
    from rapo.finetune.evaluate import table_rows

    table = Table(title=f"{report.pairs} val pairs, {report.data}")
    for column in ("model", "similarity", "ROUGE-L", "faithfulness", "words"):
        table.add_column(column)
    for row in table_rows(report):
        table.add_row(*row)
    return table
