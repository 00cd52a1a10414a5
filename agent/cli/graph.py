"""`rapo graph ...`: build, import, inspect and query relation graphs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rapo.agent.cli.options import GraphOpt, JsonOpt
from rapo.agent.runs.refine import open_graph
from rapo.agent.settings import Settings
from rapo.common import GraphFileError, InputFileError, RapoError, progress_bar, stderr, stdout
from rapo.graph_db.backends import open_store
from rapo.graph_db.builder import build_graph
from rapo.graph_db.embeddings import Embedder
from rapo.graph_db.importers import caption_format, import_rapo, read_captions
from rapo.graph_db.neo4j_config import is_server_url
from rapo.graph_db.store import GraphSource, GraphStore, check_embedder
from rapo.graph_db.transfer import CopyReport, copy_graph
from rapo.tools.retrieval import GraphLookup

graph_app = typer.Typer(help="Build, import, inspect and query relation graphs.", no_args_is_help=True)

OutOpt = Annotated[
    str,
    typer.Option(
        "--graph", "-g", help="Graph file to create, or to add to if it exists; or a bolt:// or neo4j:// URL."
    ),
]
UrlArg = Annotated[
    str, typer.Argument(help="Neo4j URL: bolt://[USER@]HOST:PORT[/DATABASE]; the password from $NEO4J_PASSWORD.")
]
ReplaceOpt = Annotated[bool, typer.Option("--replace", help="Overwrite a different graph at the destination.")]


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
        with progress_bar() as bar:
            reading = bar.add_task(f"extracting {path.name}", total=limit)
            embedding = None

            def start_embedding(total: int, bar=bar) -> Callable[[int], None]:
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
        stderr.print(f"{path}: {meta.sources[-1].captions} captions with a scene and a modifier", markup=False)
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
    if is_server_url(graph):
        with open_store(graph, create=True) as store:
            if store.progress() is not None or _holds_graph(store):
                raise RapoError(f"{store.location} holds a graph already: import-rapo writes a new graph")
            import_rapo(folder, store, Embedder())
        _print_stats(graph, as_json=False)
        return
    graph = Path(graph)
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


def _holds_graph(store: GraphStore) -> bool:
    try:
        store.meta()
    except GraphFileError:
        return False
    return True


def _print_stats(location: str | Path, as_json: bool) -> None:
    with open_store(location) as store:
        result = store.stats()
    if as_json:
        stdout.print_json(result.model_dump_json())
        return
    table = Table(title=f"{result.location} ({result.meta.captions} captions, embedder {result.meta.embedder})")
    table.add_column("kind")
    table.add_column("nodes", justify="right")
    table.add_column("edges to scenes", justify="right")
    for kind, count in result.nodes.items():
        table.add_row(kind, str(count), str(result.edges.get(kind, "")))
    stdout.print(table)


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
    location, embedder = open_graph(graph, Settings())
    with open_store(location) as store:
        check_embedder(store, embedder)
        result = GraphLookup(store, embedder).retrieve(text, top_k, threshold)
    if as_json:
        stdout.print_json(result.model_dump_json())
        return
    table = Table(
        title=f"{len(result.modifiers)} modifiers >= {threshold} from scenes: "
        + ", ".join(f"{s} ({score:.2f})" for s, score in result.scenes)
    )
    for column in ("score", "kind", "modifier", "scene", "weight"):
        table.add_column(column)
    for m in result.modifiers:
        table.add_row(f"{m.score:.3f}", m.kind.value, m.text, m.scene, str(m.weight))
    stdout.print(table)


def _copy(source: GraphStore, target: GraphStore, replace: bool, verb: str) -> CopyReport:
    with progress_bar() as bar:
        task = bar.add_task(f"{verb} {source.location} -> {target.location}", total=None)
        report = copy_graph(
            source,
            target,
            replace=replace,
            on_start=lambda total: bar.update(task, total=total),
            on_progress=lambda n: bar.advance(task, n),
        )
    if report.up_to_date:
        stderr.print(f"{target.location} already holds this graph: nothing to do", markup=False)
    else:
        rate = report.rows / max(report.seconds, 1e-9)
        stderr.print(
            f"{'resumed an interrupted copy: ' if report.resumed else ''}wrote {report.rows} rows in "
            f"{report.seconds:.1f} s ({rate:,.0f} rows/s); {target.location} holds {report.nodes} nodes and "
            f"{report.edges} edges, as its source does",
            markup=False,
        )
    return report


@graph_app.command()
def push(
    file: Annotated[Path, typer.Argument(help="The graph file to copy.")],
    url: UrlArg,
    replace: ReplaceOpt = False,
) -> None:
    """Copy a graph file into Neo4j: batched, resumable after a kill, a second push changes nothing.

    Examples:
      NEO4J_PASSWORD=... rapo graph push my.graph bolt://127.0.0.1:7687
      rapo graph push my.graph neo4j://alice@graphs.example.org:7687/captions --replace
    """
    if not is_server_url(url):
        raise RapoError(f"{url}: push copies to a bolt:// or neo4j:// URL (to copy files, use cp)")
    with open_store(file) as source, open_store(url, create=True) as target:
        _copy(source, target, replace, "pushing")
    _print_stats(url, as_json=False)


@graph_app.command()
def pull(
    url: UrlArg,
    file: Annotated[Path, typer.Argument(help="The graph file to write.")],
    replace: ReplaceOpt = False,
) -> None:
    """Copy a graph from Neo4j into a graph file: batched, resumable after a kill, a second pull changes nothing.

    Examples:
      rapo graph pull bolt://127.0.0.1:7687 copy.graph
    """
    if not is_server_url(url):
        raise RapoError(f"{url}: pull copies from a bolt:// or neo4j:// URL")
    with open_store(url) as source:
        if file.exists() and not replace:
            with open_store(file) as existing:
                _copy(source, existing, False, "checking")  # same graph: nothing to do; another: an error
            return
        partial = file.with_name(file.name + ".partial")  # resumable: a rerun goes on where a killed pull stopped
        with open_store(partial, create=True) as target:
            _copy(source, target, replace, "pulling")
    partial.replace(file)
    _print_stats(file, as_json=False)
