"""`rapo graph ...`: build, import, inspect and query relation graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agent import console
from agent.options import GraphOpt, JsonOpt, open_graph
from agent.settings import Settings
from graph_db.builder import build_graph
from graph_db.embeddings import Embedder
from graph_db.errors import InputFileError, RapoError
from graph_db.importers import caption_format, import_rapo, read_captions
from graph_db.store import GraphSource, open_store
from tools.retrieval import GraphLookup

graph_app = typer.Typer(help="Build, import, inspect and query relation graphs.", no_args_is_help=True)

OutOpt = Annotated[Path, typer.Option("--graph", "-g", help="Graph file to create, or to add to if it exists.")]


def _parse_where(where: list[str]) -> dict[str, str]:
    pairs = {}
    for item in where:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise RapoError(f"--where {item!r}: expected COLUMN=VALUE")
        pairs[column] = value
    return pairs


@graph_app.command()
def build(
    captions: Annotated[list[Path], typer.Argument(help="Caption files: .tsv, .csv, .jsonl, or .txt (one per line).")],
    graph: OutOpt,
    where: Annotated[
        list[str], typer.Option("--where", help="Keep rows with COLUMN=VALUE (TSV/CSV/JSONL); repeatable.")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    limit: Annotated[int | None, typer.Option(help="Read at most this many captions per file.", min=1)] = None,
) -> None:
    """Build (or extend) a relation graph from caption files.

    Examples:
      rapo graph build captions.tsv --graph my.graph --where modality=video
      rapo graph build vbench_prompts.txt --graph my.graph
    """
    filters = _parse_where(where)
    for path in captions:  # check every file before spending time on any
        caption_format(path)
        if not path.is_file():
            raise InputFileError(f"file not found: {path}")
    embedder = Embedder()
    for path in captions:
        texts = read_captions(path, filters)
        if limit:
            texts = (t for i, t in zip(range(limit), texts, strict=False))
        with console.progress() as bar:
            reading = bar.add_task(f"extracting {path.name}", total=limit)
            embedding = None

            def start_embedding(total: int, bar=bar) -> callable:
                nonlocal embedding
                embedding = bar.add_task("embedding phrases", total=total)
                return lambda n: bar.advance(embedding, n)

            meta = build_graph(
                texts,
                graph,
                embedder,
                GraphSource(location=str(path), format=caption_format(path), captions=0),
                on_caption=lambda n, bar=bar, reading=reading: bar.advance(reading, n),
                on_embed=start_embedding,
            )
        console.err.print(f"{path}: {meta.sources[-1].captions} captions with a scene and a modifier", markup=False)
    _print_stats(graph, as_json=False)


@graph_app.command("import-rapo")
def import_rapo_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder written by the reference RAPO construct_graph.py.")],
    graph: OutOpt,
) -> None:
    """Import a graph in the reference RAPO format (*_to_idx.json, *_embed.json, GraphML).

    Example:
      rapo graph import-rapo ./graph/graph_test1 --graph rapo.graph
    """
    if graph.exists():
        raise RapoError(f"{graph} exists: import-rapo writes a new graph file")
    partial = graph.with_name(graph.name + ".partial")
    partial.unlink(missing_ok=True)
    store = open_store(partial, create=True)
    try:
        import_rapo(folder, store, Embedder())
    finally:
        store.close()
    partial.replace(graph)
    _print_stats(graph, as_json=False)


@graph_app.command()
def stats(graph: GraphOpt = None, as_json: JsonOpt = False) -> None:
    """Show a graph's node and edge counts and where it came from.

    Example:
      rapo graph stats --graph my.graph
    """
    path, _ = open_graph(graph, Settings())
    _print_stats(path, as_json)


def _print_stats(path: Path, as_json: bool) -> None:
    store = open_store(path)
    try:
        result = store.stats()
    finally:
        store.close()
    if as_json:
        console.out.print_json(result.model_dump_json())
        return
    table = Table(title=f"{path} ({result.meta.captions} captions, embedder {result.meta.embedder})")
    table.add_column("kind")
    table.add_column("nodes", justify="right")
    table.add_column("edges to scenes", justify="right")
    for kind, count in result.nodes.items():
        table.add_row(kind, str(count), str(result.edges.get(kind, "")))
    console.out.print(table)


@graph_app.command()
def query(
    text: Annotated[str, typer.Argument(help="A prompt to retrieve modifiers for.")],
    graph: GraphOpt = None,
    top_k: Annotated[int, typer.Option(help="Scenes to expand.", min=1, max=50)] = 3,
    threshold: Annotated[float, typer.Option(help="Minimum modifier-prompt cosine similarity.")] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """Show the scenes and modifiers the graph retrieves for a prompt.

    Example:
      rapo graph query "a dog running on the beach" --threshold 0.4
    """
    if not text.strip():
        raise RapoError("query text is empty")
    path, embedder = open_graph(graph, Settings())
    store = open_store(path)
    try:
        result = GraphLookup(store, embedder).retrieve(text, top_k, threshold)
    finally:
        store.close()
    if as_json:
        console.out.print_json(result.model_dump_json())
        return
    table = Table(
        title=f"{len(result.modifiers)} modifiers >= {threshold} from scenes: "
        + ", ".join(f"{s} ({score:.2f})" for s, score in result.scenes)
    )
    for column in ("score", "kind", "modifier", "scene", "weight"):
        table.add_column(column)
    for m in result.modifiers:
        table.add_row(f"{m.score:.3f}", m.kind.value, m.text, m.scene, str(m.weight))
    console.out.print(table)
