"""Copy a whole graph between stores (`rapo graph push` / `pull`): batched, idempotent, resumable, verified.

Rows go over in batches in the source's text order: the nodes of each kind, then the edges scene by scene.
Each batch is written with its exact counts (a MERGE on Neo4j), together with a note of how far the copy got,
in one transaction. A copy that is killed therefore resumes after its last written batch when the same command
runs again, and writing a batch twice changes nothing. The metadata is written last, so an unfinished copy is
never mistaken for a graph. At the end the node and edge counts per kind of both stores must match.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from rapo.common import GraphCopyError, GraphFileError
from rapo.graph_db.model import Kind
from rapo.graph_db.store import GraphMeta, GraphStats, GraphStore

NODES_PER_BATCH = 2000
EDGES_PER_BATCH = 10000

Progress = Callable[[int], None]


@dataclass(frozen=True)
class CopyReport:
    """What a copy did."""

    source: str
    target: str
    nodes: int  # in the target at the end
    edges: int
    rows: int  # nodes and edges written by this run (fewer than nodes + edges when it resumed a killed copy)
    seconds: float
    resumed: bool = False
    up_to_date: bool = False


def fingerprint(meta: GraphMeta, stats: GraphStats) -> str:
    """A short hash of a graph's metadata and sizes: a copy resumes only into a copy of the same graph."""
    text = meta.model_dump_json() + repr(sorted(stats.nodes.items())) + repr(sorted(stats.edges.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _existing(store: GraphStore) -> GraphMeta | None:
    try:
        return store.meta()
    except GraphFileError:  # empty, or an unfinished copy
        return None


def _differences(source: GraphStats, target: GraphStats) -> list[str]:
    out = []
    for what in ("nodes", "edges"):
        theirs, ours = getattr(source, what), getattr(target, what)
        for kind in sorted(set(theirs) | set(ours)):
            if theirs.get(kind, 0) != ours.get(kind, 0):
                out.append(f"{kind} {what}: {ours.get(kind, 0)} in {target.location}, {theirs.get(kind, 0)} in source")
    return out


def copy_graph(
    source: GraphStore,
    target: GraphStore,
    *,
    replace: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> CopyReport:
    """Copy the whole graph in `source` into `target`, resuming an interrupted copy of the same graph.

    Args:
        source: the graph to copy; must hold a graph.
        target: where to copy it; empty, holding an unfinished copy of the same graph, or the same graph
            already (then nothing is written).
        replace: delete whatever graph `target` holds first.
        on_start: called with the number of rows (nodes + edges) to copy.
        on_progress: called with the number of rows written after each batch.

    Raises:
        GraphCopyError: `target` holds another graph (and not `replace`), or the counts differ at the end.
    """
    started = time.perf_counter()
    # 1. Check both ends before writing anything
    meta, stats = source.meta(), source.stats()
    source_print = fingerprint(meta, stats)
    total = sum(stats.nodes.values()) + sum(stats.edges.values())
    if replace:
        target.clear()
    held, progress = _existing(target), target.progress()
    if held is not None:
        if held == meta and not _differences(stats, target.stats()):
            target.finish(meta)  # (re)creates missing indexes on Neo4j; the graph itself is unchanged
            if on_start:
                on_start(0)
            held_stats = target.stats()
            return CopyReport(
                source.location,
                target.location,
                sum(held_stats.nodes.values()),
                sum(held_stats.edges.values()),
                0,
                time.perf_counter() - started,
                up_to_date=True,
            )
        raise GraphCopyError(
            f"{target.location} already holds another graph ({held.captions} captions, built "
            f"{held.sources[-1].added_at if held.sources else 'from nothing'}): pass --replace to overwrite it"
        )
    if progress is not None and progress.get("source") != source_print:
        raise GraphCopyError(
            f"{target.location} holds part of an interrupted copy of another graph: pass --replace to start over"
        )
    if progress is None and any(target.export_nodes(kind, "", 1) for kind in Kind):
        raise GraphCopyError(f"{target.location} holds nodes but no graph metadata: pass --replace to overwrite it")
    resumed = progress is not None
    rows_before = progress["rows"] if progress else 0
    progress = progress or {"source": source_print, "stage": "nodes", "kind": Kind.SCENE.value, "after": "", "rows": 0}
    if on_start:
        on_start(total)
    if on_progress and progress["rows"]:
        on_progress(progress["rows"])

    # 2. Nodes, kind by kind, in text order
    kinds = list(Kind)
    while progress["stage"] == "nodes":
        kind = Kind(progress["kind"])
        rows = source.export_nodes(kind, progress["after"], NODES_PER_BATCH)
        if rows:
            progress = {**progress, "after": rows[-1].text, "rows": progress["rows"] + len(rows)}
        elif kinds.index(kind) + 1 < len(kinds):
            progress = {**progress, "kind": kinds[kinds.index(kind) + 1].value, "after": ""}
        else:
            progress = {**progress, "stage": "edges", "kind": None, "after": ""}
        target.put(rows, [], progress)
        if on_progress and rows:
            on_progress(len(rows))

    # 3. Edges, scene by scene, about EDGES_PER_BATCH at a time
    mean_degree = max(1.0, sum(stats.edges.values()) / max(1, stats.nodes.get(Kind.SCENE.value, 0)))
    scenes = max(1, int(EDGES_PER_BATCH / mean_degree))
    while progress["stage"] == "edges":
        edges, last = source.export_edges(progress["after"], scenes)
        if last is None:
            progress = {**progress, "stage": "done"}
        else:
            progress = {**progress, "after": last, "rows": progress["rows"] + len(edges)}
        target.put([], edges, progress)
        if on_progress and edges:
            on_progress(len(edges))

    # 4. Metadata last, then the counts must match
    target.finish(meta)
    result = target.stats()
    if problems := _differences(stats, result):
        raise GraphCopyError(f"copy to {target.location} does not match its source: " + "; ".join(problems))
    return CopyReport(
        source.location,
        target.location,
        sum(result.nodes.values()),
        sum(result.edges.values()),
        progress["rows"] - rows_before,
        time.perf_counter() - started,
        resumed=resumed,
    )
