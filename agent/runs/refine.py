"""`rapo refine`: open the graph, build the Stage 1 pipeline, and run it over a prompt file resumably.

Light to import (no LangChain or LangGraph): every command that opens a graph imports it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.runs.refine_client import RemoteStage1, ServerIdentity, find_server, identity
from agent.settings import Settings
from graph_db.backends import open_store
from graph_db.default_graph import default_graph_path
from graph_db.embeddings import Embedder
from graph_db.neo4j_config import is_server_url
from graph_db.store import check_embedder
from rapo_common import RapoError, jsonl_line, progress_bar, read_lines, stderr, stdout
from tools.adapters import DEFAULT_ADAPTER
from tools.discriminator import LearnedDiscriminator
from tools.llm_backends import make_llm
from tools.profiles import TargetName, profile
from tools.retrieval import GraphLookup
from tools.stage1 import Stage1, Stage1Settings


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


def refine_file(pipeline: Stage1 | RemoteStage1, prompts: list[tuple[int, str]], out: Path | None, seed: int) -> None:
    """Refine every (line number, prompt) and write one JSON line each, in input order.

    With `out`, lines go to `out.partial` as they finish; a rerun after a crash skips the lines
    already there, and the file is renamed to `out` when every line is done. A prompt that fails
    becomes a line with an `error` field and the batch goes on. With a served LLM, up to its
    `concurrency` prompts are refined at once (their requests overlap on the server); lines are
    still written in input order.
    """
    partial = out.with_name(out.name + ".partial") if out else None
    done = _finished_lines(partial) if partial else set()
    todo = [(number, prompt) for number, prompt in prompts if number not in done]
    workers = getattr(pipeline.llm, "concurrency", 1)
    if todo:
        pipeline.load()  # once, before any thread needs it
    sink = partial.open("a", encoding="utf-8") if partial else None
    try:
        with progress_bar() as bar, ThreadPoolExecutor(max_workers=workers) as pool:
            task = bar.add_task("refining", total=len(prompts), completed=len(done))
            mapper = pool.map if workers > 1 else map  # one at a time: in this thread, as before
            for record in mapper(lambda item: _refine_line(pipeline, *item, seed), todo):
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


def _refine_line(pipeline: Stage1 | RemoteStage1, number: int, prompt: str, seed: int) -> dict:
    """The output record of one line: the result, or the error that stopped it."""
    try:
        return {"line": number, **pipeline.run(prompt, seed).model_dump(mode="json")}
    except RapoError as exc:
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
