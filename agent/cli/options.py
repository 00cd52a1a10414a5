"""Command-line option types shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

GraphOpt = Annotated[
    str | None,
    typer.Option(
        "--graph",
        "-g",
        help="Relation graph: a file, or a Neo4j URL bolt://\\[USER@]HOST:PORT\\[/DATABASE] with the password in "
        "$NEO4J_PASSWORD (default: $RAPO_GRAPH, else the shipped one).",
    ),
]
LlmOpt = Annotated[
    str | None,
    typer.Option(
        "--llm",
        help="A local causal LM folder, or a served model: openai:http://HOST:PORT/v1[#MODEL] (vLLM or any "
        "OpenAI-compatible server; key in $OPENAI_API_KEY). Default: $RAPO_LLM, else SmolLM2-135M-Instruct.",
    ),
]
AdapterOpt = Annotated[
    str | None,
    typer.Option(
        "--adapter",
        help="LoRA adapter: a PEFT folder (from `rapo finetune train`) loaded on a local --llm, or the name of a "
        "LoRA module the --llm server serves (vLLM --lora-modules NAME=DIR); `none` for the plain model. Default: "
        "the shipped distilled rewriter on the default LLM, none on any other.",
    ),
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="The video model to write for, which sets the prompt length: wan (80-100 words), cogvideox (50-120), "
        "hunyuan (40-90), ltx (60-150) or short (8-35). Default: $RAPO_TARGET, else wan.",
    ),
]
DiscriminatorOpt = Annotated[
    str | None,
    typer.Option(
        "--discriminator",
        help="A learned discriminator folder (from `rapo finetune discriminator`) to choose between Stage 1's "
        "branches. Default: the hand formula.",
    ),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for every sampled step (default: $RAPO_SEED or 0).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LocalOpt = Annotated[
    bool, typer.Option("--local", help="Load the models here even when a `rapo serve` with them runs.")
]

# The video generator's options, shared by `rapo optimize` and `rapo eval sample`.
FramesOpt = Annotated[int, typer.Option(help="Frames per video.", min=1)]
HeightOpt = Annotated[int, typer.Option(help="Video height.", min=8)]
WidthOpt = Annotated[int, typer.Option(help="Video width.", min=8)]
StepsOpt = Annotated[int, typer.Option(help="Denoising steps.", min=1)]
GuidanceOpt = Annotated[float, typer.Option(help="Classifier-free guidance scale.")]
CpuOffloadOpt = Annotated[bool, typer.Option(help="Offload idle pipeline parts to the CPU.")]
VaeTilingOpt = Annotated[bool, typer.Option(help="Decode the VAE in tiles (less memory).")]
