"""Benchmark the two graph backends: build into the embedded store, push to Neo4j, retrieve on both.

Reads the video captions of `../shared/data/captions/combined_captions.tsv` and the VBench prompts of
`../shared/data/benchmarks/vbench/prompts/` (all_dimension.txt, then all_category.txt; both relative to the
project root). Needs a Neo4j server: `--neo4j URL` (password in $NEO4J_PASSWORD or $NEO4J_PASSWORD_FILE), else
$NEO4J_URL, else it starts the project's local one (`scripts/neo4j-local start`, left running; stop it with
`bash scripts/neo4j-local stop`). The graph in that database is replaced.

Full run (100,000 video captions, 1,000 prompts):
    .venv/bin/python bench/graph.py

Quick trial:
    .venv/bin/python bench/graph.py --captions-limit 5000 --prompts 100 --work /tmp/bench-graph

The embedded graph is kept in the work folder (one file per caption limit) and reused unless --rebuild; its
build figures are kept beside it. Writes `<work>/graph.json` with every figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from rapo.common import progress_bar, quiet_libraries, stdout
from rapo.graph_db.backends import open_store
from rapo.graph_db.builder import build_graph
from rapo.graph_db.embeddings import Embedder
from rapo.graph_db.importers import read_captions
from rapo.graph_db.neo4j_config import Neo4jSettings
from rapo.graph_db.store import GraphSource
from rapo.graph_db.transfer import copy_graph
from rapo.tools.retrieval import GraphLookup

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CAPTIONS = DATA / "captions" / "combined_captions.tsv"
PROMPT_FILES = [DATA / "benchmarks" / "vbench" / "prompts" / n for n in ("all_dimension.txt", "all_category.txt")]
LOCAL = ROOT / ".neo4j-local"
WARMUP = 5


def pct(values: list[float], q: float, scale: float = 1.0) -> float:
    """The q-th percentile of `values` times `scale`, rounded; 0.0 when there are none."""
    return round(float(np.percentile(values, q)) * scale, 3) if values else 0.0


def build(captions_limit: int, graph: Path, embedder: Embedder) -> dict:
    """Build the embedded graph from the first `captions_limit` video captions; returns counts and seconds."""
    graph.unlink(missing_ok=True)
    marks: dict[str, float] = {}
    counts = {"captions": 0, "phrases": 0}
    with progress_bar() as bar:
        read = bar.add_task("extracting", total=captions_limit)

        def on_caption(n: int) -> None:
            counts["captions"] += n
            bar.advance(read, n)

        def on_embed(phrases: int):  # noqa: ANN202 - a progress callback
            marks["extracted"] = time.perf_counter()
            counts["phrases"] = phrases
            task = bar.add_task("embedding", total=phrases)
            return lambda n: bar.advance(task, n)

        embedder.load()  # model loading is not build throughput
        started = time.perf_counter()
        rows = itertools.islice(read_captions(CAPTIONS, where={"modality": "video"}), captions_limit)
        source = GraphSource(location=str(CAPTIONS), format="captions-tsv", captions=0)
        meta = build_graph(rows, graph, embedder, source, on_caption=on_caption, on_embed=on_embed)
        seconds = time.perf_counter() - started
    return {
        "captions_read": counts["captions"],
        "captions_used": meta.captions,
        "phrases": counts["phrases"],
        "extract_s": round(marks["extracted"] - started, 2),
        "total_s": round(seconds, 2),
        "captions_per_s": round(counts["captions"] / seconds, 1),
    }


def neo4j_url(given: str | None) -> tuple[str, dict]:
    """The server to push to, starting the local one when none is given; with its start-up seconds if started."""
    url = given or os.environ.get("NEO4J_URL")
    if url:
        return url, {"server": "given"}
    started = time.perf_counter()
    subprocess.run(["bash", str(ROOT / "scripts" / "neo4j-local"), "start"], check=True)
    seconds = time.perf_counter() - started
    env = subprocess.run(
        ["bash", str(ROOT / "scripts" / "neo4j-local"), "env"], check=True, capture_output=True, text=True
    ).stdout
    for line in env.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        os.environ[name] = value
    return os.environ["NEO4J_URL"], {"server": "scripts/neo4j-local", "start_s": round(seconds, 1)}


def push(graph: Path, url: str) -> dict:
    """Replace the graph at `url` with the embedded one; returns throughput."""
    with open_store(graph) as source, open_store(url, create=True) as target, progress_bar() as bar:
        task = bar.add_task("pushing", total=None)
        report = copy_graph(
            source,
            target,
            replace=True,
            on_start=lambda n: bar.update(task, total=n),
            on_progress=lambda n: bar.advance(task, n),
        )
    rows = report.rows
    return {
        "nodes": report.nodes,
        "edges": report.edges,
        "seconds": round(report.seconds, 2),
        "rows_per_s": round(rows / report.seconds, 1),
        "nodes_per_s": round(report.nodes / report.seconds, 1),
    }


def retrieval(graph: Path, url: str, embedder: Embedder, prompts: list[str], top_k: int, threshold: float) -> dict:
    """Time `GraphLookup.retrieve` per prompt on both stores (interleaved, same query vectors); compare results."""
    vectors = embedder.encode(prompts)  # (P, 384): embedding is the same work on both backends
    times: dict[str, list[float]] = {"embedded": [], "neo4j": []}
    same_modifiers = same_scenes = 0
    worst = 0.0
    with open_store(graph) as local, open_store(url) as server, progress_bar() as bar:
        lookups = {"embedded": GraphLookup(local, embedder), "neo4j": GraphLookup(server, embedder)}
        for prompt, vector in zip(prompts[:WARMUP], vectors, strict=False):  # lazy loads and cold caches
            for lookup in lookups.values():
                lookup.retrieve(prompt, top_k, threshold, query=vector)
        task = bar.add_task("retrieval", total=len(prompts))
        for prompt, vector in zip(prompts, vectors, strict=True):
            results = {}
            for name, lookup in lookups.items():
                t0 = time.perf_counter()
                results[name] = lookup.retrieve(prompt, top_k, threshold, query=vector)
                times[name].append(time.perf_counter() - t0)
            a, b = results["embedded"], results["neo4j"]
            same_scenes += [s for s, _ in a.scenes] == [s for s, _ in b.scenes]
            keys = [(m.kind, m.text, m.scene, m.weight) for m in a.modifiers]
            if keys == [(m.kind, m.text, m.scene, m.weight) for m in b.modifiers]:
                same_modifiers += 1
                worst = max([worst, *(abs(x.score - y.score) for x, y in zip(a.modifiers, b.modifiers, strict=True))])
            bar.advance(task)
    figures = {f"{name}_{q}_ms": pct(v, int(q[1:]), 1000) for name, v in times.items() for q in ("p50", "p95")}
    figures["neo4j_over_embedded_p50"] = round(figures["neo4j_p50_ms"] / figures["embedded_p50_ms"], 2)
    figures["neo4j_over_embedded_p95"] = round(figures["neo4j_p95_ms"] / figures["embedded_p95_ms"], 2)
    figures["same_scenes_share"] = round(same_scenes / len(prompts), 4)
    figures["same_modifiers_share"] = round(same_modifiers / len(prompts), 4)
    figures["max_score_difference"] = float(f"{worst:.2e}")
    return figures


def sizes(graph: Path, url: str) -> dict:
    """Bytes on disk: the embedded file, and the local Neo4j database's store and transaction log folders."""
    out = {"embedded_mb": round(graph.stat().st_size / 2**20, 1)}
    settings = Neo4jSettings.from_location(url)
    port = (LOCAL / "port").read_text().strip() if (LOCAL / "port").is_file() else None
    if port and settings.url.endswith(f"127.0.0.1:{port}"):
        data = LOCAL / "home" / "data"
        for part in ("databases", "transactions"):
            folder = data / part / settings.database
            out[f"neo4j_{part}_mb"] = round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1)
    else:
        out["neo4j"] = "not local: not measured"
    return out


def main() -> None:
    """Build (or reuse) the embedded graph, push it to Neo4j, time retrieval on both and report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work", help="Folder for the graph and results.")
    parser.add_argument("--captions-limit", type=int, default=100_000, help="Video captions to build from.")
    parser.add_argument("--rebuild", action="store_true", help="Build the graph even if the work folder has it.")
    parser.add_argument("--prompts", type=int, default=1000, help="VBench prompts to retrieve for.")
    parser.add_argument("--neo4j", default=None, help="Neo4j URL (default $NEO4J_URL, else the local server).")
    parser.add_argument("--top-k", type=int, default=3, help="Scenes to expand, as `rapo refine`.")
    parser.add_argument("--threshold", type=float, default=0.5, help="Minimum modifier-prompt similarity.")
    args = parser.parse_args()
    for path in (CAPTIONS, *PROMPT_FILES):
        if not path.is_file():
            sys.exit(f"benchmark data missing: {path} (expected the shared data folder beside the project)")
    quiet_libraries()
    embedder = Embedder()
    figures: dict[str, dict] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1m": os.getloadavg()[0]},
        "settings": {"captions_limit": args.captions_limit, "prompts": args.prompts, "top_k": args.top_k},
    }

    # 1. Build the embedded graph, or reuse the one built from the same number of captions
    args.work.mkdir(parents=True, exist_ok=True)
    graph = args.work / f"graph-{args.captions_limit}.sqlite"
    build_file = graph.with_suffix(".build.json")
    if args.rebuild or not graph.is_file() or not build_file.is_file():
        build_file.unlink(missing_ok=True)
        build_file.write_text(json.dumps(build(args.captions_limit, graph, embedder)))
    figures["build"] = json.loads(build_file.read_text())
    with open_store(graph) as store:
        stats = store.stats()
    figures["graph"] = {"nodes": stats.nodes, "edges": stats.edges}

    # 2. Push it to Neo4j
    url, server = neo4j_url(args.neo4j)
    figures["neo4j"] = {**server, "location": Neo4jSettings.from_location(url).location}
    figures["push"] = push(graph, url)

    # 3. Retrieval on both, for the same prompts
    prompts = list(dict.fromkeys(line.strip() for p in PROMPT_FILES for line in p.read_text().splitlines()))
    prompts = [p for p in prompts if p][: args.prompts]
    embedder.load()
    figures["retrieval"] = retrieval(graph, url, embedder, prompts, args.top_k, args.threshold)
    figures["sizes"] = sizes(graph, url)
    figures["machine"]["load_1m_end"] = os.getloadavg()[0]

    (args.work / "graph.json").write_text(json.dumps(figures, indent=2))
    table = Table(title="rapo graph backends benchmark", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for section, values in figures.items():
        table.add_section()
        table.add_row(f"[cyan]{section}[/cyan]", "")
        for key, value in values.items():
            table.add_row(f"  {key}", str(value))
    stdout.print(table)


if __name__ == "__main__":
    main()
