"""Benchmark the relation graph build, graph retrieval and Stage 1 on VBench prompts, on CPU.

Reads the video captions of `../shared/data/captions/combined_captions.tsv` and the VBench prompts of
`../shared/data/benchmarks/vbench/prompts/all_dimension.txt` (both relative to the project root).

Full run (all ~181k video captions, 100 prompts):
    .venv/bin/python bench/stage1.py

Quick trial:
    .venv/bin/python bench/stage1.py --captions-limit 3000 --limit 10 --stage1-limit 3 --work /tmp/bench-trial

The graph is kept in the work folder (one file per caption limit) and reused unless --rebuild; its
build figures are kept beside it. Writes `<work>/stage1.json` (all figures) and
`<work>/stage1_outputs.jsonl` (input, output and branch per prompt).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.table import Table

from rapo.common import progress_bar, quiet_libraries, stderr, stdout
from rapo.graph_db.backends import open_store
from rapo.graph_db.builder import build_graph
from rapo.graph_db.embeddings import Embedder
from rapo.graph_db.importers import read_captions
from rapo.graph_db.store import GraphSource
from rapo.tools.guards import faithfulness
from rapo.tools.llm import LocalLLM
from rapo.tools.retrieval import GraphLookup
from rapo.tools.stage1 import Stage1, Stage1Settings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CAPTIONS = DATA / "captions" / "combined_captions.tsv"
PROMPTS = DATA / "benchmarks" / "vbench" / "prompts" / "all_dimension.txt"
WARMUP = 5


def pct(values: list[float], q: float, scale: float = 1.0) -> float:
    """The q-th percentile of `values` times `scale`, rounded; 0.0 when there are none."""
    return round(float(np.percentile(values, q)) * scale, 3) if values else 0.0


def build(captions_limit: int | None, graph: Path, embedder: Embedder) -> dict:
    """Build the graph from the video captions and time its phases.

    Args:
        captions_limit: read at most this many video captions (None: all).
        graph: the graph file to write; replaced if it exists.
        embedder: the phrase embedder.

    Returns:
        Counts and seconds of the extraction (read + extract), embedding and writing phases.
    """
    graph.unlink(missing_ok=True)
    marks: dict[str, float] = {}
    counts = {"captions": 0, "phrases": 0}
    with progress_bar() as bar:
        read = bar.add_task("extracting", total=captions_limit)
        embed = bar.add_task("embedding", total=None, visible=False)

        def on_caption(n: int) -> None:
            counts["captions"] += n
            bar.advance(read, n)

        def on_embed(phrases: int):  # noqa: ANN202 - a progress callback
            marks["extracted"] = time.perf_counter()
            counts["phrases"] = phrases
            bar.update(embed, total=phrases, visible=True)

            def on_batch(n: int) -> None:
                marks["embedded"] = time.perf_counter()
                bar.advance(embed, n)

            return on_batch

        embedder.load()  # model loading is not embedding throughput
        started = time.perf_counter()
        rows = itertools.islice(read_captions(CAPTIONS, where={"modality": "video"}), captions_limit)
        source = GraphSource(location=str(CAPTIONS), format="captions-tsv", captions=0)
        meta = build_graph(rows, graph, embedder, source, on_caption=on_caption, on_embed=on_embed)
        done = time.perf_counter()
    embedded = marks.get("embedded", marks["extracted"])
    extract_s, embed_s, write_s = marks["extracted"] - started, embedded - marks["extracted"], done - embedded
    return {
        "captions_read": counts["captions"],
        "captions_used": meta.captions,
        "phrases": counts["phrases"],
        "extract_s": round(extract_s, 2),
        "embed_s": round(embed_s, 2),
        "write_s": round(write_s, 2),
        "total_s": round(done - started, 2),
        "extract_captions_per_s": round(counts["captions"] / extract_s, 1),
        "embed_phrases_per_s": round(counts["phrases"] / embed_s, 1) if embed_s else 0.0,
        "total_captions_per_s": round(counts["captions"] / (done - started), 1),
    }


def retrieval_latency(lookup: GraphLookup, prompts: list[str], top_k: int, threshold: float) -> dict:
    """Time embedding a prompt, searching the graph with its vector, and both, per prompt; in ms."""
    embedder = lookup.embedder
    for prompt in prompts[:WARMUP]:  # first calls pay for lazy initialisation and cold caches
        lookup.retrieve(prompt, top_k, threshold)
    times: dict[str, list[float]] = {"embed": [], "search": [], "both": []}
    with progress_bar() as bar:
        task = bar.add_task("retrieval", total=len(prompts))
        for prompt in prompts:
            t0 = time.perf_counter()
            vector = embedder.encode_one(prompt)
            t1 = time.perf_counter()
            lookup.retrieve(prompt, top_k, threshold, query=vector)
            t2 = time.perf_counter()
            lookup.retrieve(prompt, top_k, threshold)
            t3 = time.perf_counter()
            times["embed"].append(t1 - t0)
            times["search"].append(t2 - t1)
            times["both"].append(t3 - t2)
            bar.advance(task)
    return {f"{name}_{q}_ms": pct(v, int(q[1:]), 1000) for name, v in times.items() for q in ("p50", "p95")}


def stage1_quality(stage1: Stage1, prompts: list[str], seed: int, outputs: Path) -> dict:
    """Run Stage 1 on each prompt; write (input, output, branch) lines to `outputs`; summarise."""
    load_s = stage1.load()
    results = []
    with progress_bar() as bar, outputs.open("w", encoding="utf-8") as sink:
        task = bar.add_task("stage 1", total=len(prompts))
        for prompt in prompts:
            result = stage1.run(prompt, seed)
            results.append(result)
            record = {"input": result.input, "output": result.prompt, "branch": result.branch}
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            bar.advance(task)
    n = len(results)
    steps = Counter(next(c.step for c in r.candidates if c.branch == r.branch) for r in results)
    words = [len(r.prompt.split()) for r in results]
    totals = [r.timings["total"] for r in results]
    return {
        "prompts": n,
        "faithfulness_mean": round(float(np.mean([faithfulness(r.input, r.prompt) for r in results])), 4),
        "modifiers_merged_mean": round(float(np.mean([len(r.merged) for r in results])), 3),
        "with_modifier_share": round(sum(bool(r.merged) for r in results) / n, 3),
        "words_mean": round(float(np.mean(words)), 1),
        "words_p5": pct(words, 5),
        "words_p95": pct(words, 95),
        "branch_shares": {b: round(sum(r.branch == b for r in results) / n, 3) for b in ("rapo", "naive")},
        "step_shares": {s: round(steps[s] / n, 3) for s in ("refactor", "augment", "naive", "input")},
        "rejections_per_prompt": round(float(np.mean([len(r.rejected) for r in results])), 3),
        "rejections_by_step": dict(Counter(j.step for r in results for j in r.rejected)),
        "latency_p50_s": pct(totals, 50),
        "latency_p95_s": pct(totals, 95),
        "load_s": round(load_s, 2),
    }


def report(figures: dict) -> None:
    """Print the figures as one table, grouped by section."""
    table = Table(title="rapo Stage 1 benchmark", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for section in ("machine", "settings", "build", "graph", "retrieval", "stage1"):
        table.add_section()
        table.add_row(f"[cyan]{section}[/cyan]", "")
        for key, value in figures[section].items():
            rows = value.items() if isinstance(value, dict) else [("", value)]
            for part, v in rows:
                table.add_row(f"  {key} {part}".rstrip(), str(v))
    stdout.print(table)


def main() -> None:
    """Parse options, then build (or reuse) the graph, time retrieval, run Stage 1 and report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work", help="Folder for the graph and results.")
    parser.add_argument("--captions-limit", type=int, default=None, help="Video captions to build from (default all).")
    parser.add_argument("--rebuild", action="store_true", help="Build the graph even if the work folder has it.")
    parser.add_argument("--limit", type=int, default=100, help="VBench prompts for retrieval timing (and Stage 1).")
    parser.add_argument("--stage1-limit", type=int, default=None, help="Prompts for Stage 1 (default --limit).")
    parser.add_argument("--top-k", type=int, default=3, help="Scenes to expand, as `rapo refine`.")
    parser.add_argument("--threshold", type=float, default=0.5, help="Minimum modifier-prompt similarity.")
    parser.add_argument("--seed", type=int, default=0, help="Seed for every sampled step.")
    parser.add_argument("--json-out", type=Path, default=None, help="Figures as JSON (default <work>/stage1.json).")
    args = parser.parse_args()
    for path in (CAPTIONS, PROMPTS):
        if not path.is_file():
            sys.exit(f"benchmark data missing: {path} (expected the shared data folder beside the project)")
    quiet_libraries()
    import torch

    # 1. Build the graph, or reuse the one built with the same caption limit
    args.work.mkdir(parents=True, exist_ok=True)
    graph = args.work / f"graph-video-{args.captions_limit or 'all'}.sqlite"
    build_file = graph.with_suffix(".build.json")
    embedder = Embedder()
    if args.rebuild or not graph.exists() or not build_file.exists():
        build_figures = build(args.captions_limit, graph, embedder)
        build_file.write_text(json.dumps(build_figures, indent=2))
    else:
        build_figures = {**json.loads(build_file.read_text()), "reused": True}
    store = open_store(graph)
    stats = store.stats()
    graph_figures = {
        "file_mb": round(graph.stat().st_size / 2**20, 2),
        "nodes": stats.nodes,
        "edges": stats.edges,
        "captions": stats.meta.captions,
        "caption_words_mean": stats.meta.caption_words_mean,
    }

    # 2. Retrieval latency on the VBench prompts
    prompts = list(itertools.islice(read_captions(PROMPTS), args.limit))
    lookup = GraphLookup(store, embedder)
    retrieval_figures = retrieval_latency(lookup, prompts, args.top_k, args.threshold)

    # 3. Stage 1 on the same prompts (or the first --stage1-limit of them)
    settings = Stage1Settings(top_k=args.top_k, threshold=args.threshold)
    stage1 = Stage1(lookup, LocalLLM(), settings)
    outputs = args.work / "stage1_outputs.jsonl"
    stage1_figures = stage1_quality(stage1, prompts[: args.stage1_limit or args.limit], args.seed, outputs)

    # 4. Report and record
    figures = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "settings": {
            "top_k": args.top_k,
            "threshold": args.threshold,
            "seed": args.seed,
            "captions_limit": args.captions_limit,
            "prompts": len(prompts),
            "llm": stage1.llm.model_id,
            "llm_dtype": stage1.llm.dtype,
            "embedder": embedder.model_id,
        },
        "build": build_figures,
        "graph": graph_figures,
        "retrieval": retrieval_figures,
        "stage1": stage1_figures,
    }
    report(figures)
    json_out = args.json_out or args.work / "stage1.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(figures, indent=2))
    stderr.print(f"wrote {json_out} and {outputs}", markup=False, highlight=False)
    store.close()


if __name__ == "__main__":
    main()
