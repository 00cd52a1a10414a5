"""`rapo refine`: open the graph, build the Stage 1 pipeline, and run it over a prompt file resumably.

Light to import (no LangChain or LangGraph): every command that opens a graph imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

from rapo.agent.runs.refine_client import RemoteStage1, ServerIdentity, find_server, identity
from rapo.agent.settings import Settings
from rapo.common import RapoError, jsonl_line, progress_bar, read_lines, stderr, stdout
from rapo.graph_db.backends import open_store
from rapo.graph_db.default_graph import default_graph_path
from rapo.graph_db.embeddings import Embedder
from rapo.graph_db.neo4j_config import is_server_url
from rapo.graph_db.store import check_embedder
from rapo.tools.adapters import DEFAULT_ADAPTER
from rapo.tools.discriminator import LearnedDiscriminator
from rapo.tools.llm_backends import make_llm
from rapo.tools.profiles import TargetName, profile
from rapo.tools.retrieval import GraphLookup
from rapo.tools.stage1 import Stage1, Stage1Settings, check_prompt


def stage1_pipeline(
    graph: tuple[str | Path, Embedder],
    llm: str | None,
    dtype: str,
    settings: Stage1Settings | None = None,
    adapter: str | Path | None = None,
    discriminator: str | Path | None = None,
) -> Stage1:
    """Open the graph (a file or a Neo4j URL) and set up (not yet load) the LLM; fails fast on a bad graph or model.

    `adapter` is a PEFT LoRA folder (from `rapo finetune train`) or a served LoRA module's name; see
    `resolve_adapter` for the default and for "none". `discriminator` is a folder from `rapo finetune
    discriminator`; None keeps the hand formula.
    """
    learned = LearnedDiscriminator.load(discriminator) if discriminator else None  # fails before anything opens
    location, embedder = graph
    store = open_store(location)
    try:
        check_embedder(store, embedder)
        model = make_llm(llm, dtype=dtype, adapter=resolve_adapter(llm, adapter))
    except RapoError:
        store.close()
        raise
    return Stage1(
        GraphLookup(store, embedder),
        model,
        settings or Stage1Settings(target=check_target(Settings().target)),
        learned,
    )


def stage1_identity(
    graph: str | Path, llm: str | None, adapter: str | Path | None, discriminator: str | Path | None, dtype: str
) -> ServerIdentity:
    """What `stage1_pipeline` would load for these options, as `rapo serve` announces it."""
    return identity(graph, llm, resolve_adapter(llm, adapter), discriminator, dtype)


def served_stage1(
    graph: str | Path,
    llm: str | None,
    adapter: str | Path | None,
    discriminator: str | Path | None,
    dtype: str,
    settings: Stage1Settings,
) -> RemoteStage1 | None:
    """Stage 1 on a running `rapo serve` that loaded exactly these models, or None when there is none."""
    server = find_server(stage1_identity(graph, llm, adapter, discriminator, dtype))
    return RemoteStage1(server, settings) if server else None


def open_graph(
    graph: str | Path | None, settings: Settings, embedder: Embedder | None = None
) -> tuple[str | Path, Embedder]:
    """The graph to use (the option, then $RAPO_GRAPH, then the default graph) and its embedder.

    The graph is a `Path` for a file and the URL string for a Neo4j server; `open_store` takes either.
    """
    embedder = embedder or Embedder()
    graph = graph or settings.graph
    if not graph:
        return default_graph_path(embedder), embedder
    return (str(graph) if is_server_url(graph) else Path(graph)), embedder


def check_target(name: str) -> TargetName:
    """`name` when it is a target profile's; a RapoError naming the known ones otherwise."""
    try:
        return profile(name).name
    except ValueError as exc:
        raise RapoError(f"--target: {exc}") from None


def resolve_adapter(llm: str | None, adapter: str | Path | None) -> str | Path | None:
    """The adapter to load: "none" for none; unset means the shipped one on the default LLM and none elsewhere."""
    if adapter is not None:
        return None if str(adapter) == "none" else adapter
    if llm is None and (DEFAULT_ADAPTER / "adapter_config.json").is_file():
        return DEFAULT_ADAPTER
    return None


def read_prompts(file: Path) -> list[tuple[int, str]]:
    """(line number, prompt) for every non-blank line; fails on the first line that is not UTF-8."""
    return [(number, text.strip()) for number, text in read_lines(file) if text.strip()]


def refine_file(
    pipeline: Stage1 | RemoteStage1,
    prompts: list[tuple[int, str]],
    out: Path | None,
    seed: int,
    batch: int | None = None,
) -> None:
    """Refine every (line number, prompt) and write one JSON line each, in input order.

    With `out`, lines go to `out.partial` as they finish; a rerun after a crash skips the lines
    already there, and the file is renamed to `out` when every line is done. A prompt that fails
    becomes a line with an `error` field and the batch goes on. Prompts go through Stage 1 `batch` at a time
    (`Stage1.run_many`: their LLM answers share forward passes, each answer as it would be alone); by default as
    many as the LLM takes at once (`concurrency`: a served LLM's; 1 for llama.cpp and `rapo serve`), 16 for a local
    float32 model, one at a time otherwise (bfloat16 rounds a batch differently from a single prompt, so its answers
    would depend on their neighbours).
    """
    partial = out.with_name(out.name + ".partial") if out else None
    done = _finished_lines(partial) if partial else set()
    todo = [(number, prompt) for number, prompt in prompts if number not in done]
    size = batch or default_batch(pipeline)
    if todo:
        pipeline.load()  # once, before the first batch
    sink = partial.open("a", encoding="utf-8") if partial else None
    try:
        with progress_bar() as bar:
            task = bar.add_task("refining", total=len(prompts), completed=len(done))
            for start in range(0, len(todo), size):
                for record in _refine_lines(pipeline, todo[start : start + size], seed):
                    line = jsonl_line(record)
                    if sink:
                        sink.write(line + "\n")
                        sink.flush()
                    else:
                        stdout.print(line, markup=False, highlight=False, soft_wrap=True)
                    bar.advance(task)
    finally:
        if sink:
            sink.close()
    if partial and out:
        partial.replace(out)
        stderr.print(f"wrote {len(prompts)} lines to {out}", markup=False, highlight=False)


def default_batch(pipeline: Stage1 | RemoteStage1) -> int:
    """How many prompts `refine_file` puts through Stage 1 together by default (see there)."""
    concurrency = getattr(pipeline.llm, "concurrency", None)  # a served LLM's; 1 for llama.cpp and `rapo serve`
    if concurrency:
        return int(concurrency)
    return 16 if pipeline.llm.dtype == "float32" else 1


def _refine_lines(pipeline: Stage1 | RemoteStage1, items: list[tuple[int, str]], seed: int) -> list[dict]:
    """The output records of some lines: results, or the error that stopped each line."""
    records: dict[int, dict] = {}
    good = []
    for number, prompt in items:
        try:
            good.append((number, check_prompt(prompt)))
        except RapoError as exc:
            records[number] = _error_line(number, prompt, exc)
    if len(good) > 1:
        try:
            results = pipeline.run_many([p for _, p in good], seed)
            records |= {n: {"line": n, **r.model_dump(mode="json")} for (n, _), r in zip(good, results, strict=True)}
            good = []
        except RapoError:
            pass  # one line's failure: each line alone, so the others still get their results
    for number, prompt in good:
        try:
            records[number] = {"line": number, **pipeline.run(prompt, seed).model_dump(mode="json")}
        except RapoError as exc:
            records[number] = _error_line(number, prompt, exc)
    return [records[number] for number, _ in items]


def _error_line(number: int, prompt: str, exc: RapoError) -> dict:
    stderr.print(f"line {number}: {exc}", markup=False, highlight=False)
    return {"line": number, "input": prompt[:200], "error": str(exc)}


def _finished_lines(partial: Path) -> set[int]:
    """Line numbers already refined in a partial output; a torn last line from a kill is cut off."""
    if not partial.exists():
        return set()
    data = partial.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    if len(keep) != len(data):
        partial.write_bytes(keep)
    return {json.loads(line)["line"] for line in keep.decode("utf-8").split("\n") if line.strip()}
