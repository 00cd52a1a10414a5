"""`rapo optimize`: the SSPO loop over a prompt list, one checkpointed thread per prompt, resumable.

With `overlap` N > 1, up to N prompts' graphs run at once in threads of this process, so one prompt's critics and
LLM calls run while another's video renders. Everything they share is safe in threads: the generator renders one
video at a time under its own lock (one video fills a GPU: batching two prompts saves nothing), the local LLM samples
one chat at a time under a process-wide lock (it seeds torch's global generator, so answers stay the same whatever
the schedule), and the trajectory store, LangGraph's SQLite checkpointer and the progress display each serialise
their own calls. Threads rather than a generation worker and a CPU worker: the graph already orders each prompt's
steps and checkpoints them, so running whole prompts side by side adds no second scheduler and keeps resume and the
exactly-once video cache as they are; OpenCV, torch and the video codecs release the GIL while they compute.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from pydantic import BaseModel, Field, JsonValue

from rapo.agent.loop.context import Context
from rapo.agent.loop.graph import builder
from rapo.agent.loop.state import Evaluation, SSPOState, ToolCall
from rapo.agent.runs.db import is_postgres_url
from rapo.agent.runs.trajectory import TrajectoryStore
from rapo.common import InputFileError, RapoError, jsonl_line, progress_bar, read_lines, stderr
from rapo.tools.stage1 import check_prompt

# Types the checkpoint may hold; anything else is refused when a checkpoint is read back.
_CHECKPOINT_TYPES = [
    *(("rapo.agent.loop.state", n) for n in ("SSPOState", "RoundVideo", "Evaluation", "ToolCall", "ChatState", "Turn")),
    ("rapo.tools.generator", "GeneratedVideo"),
    ("rapo.tools.generator", "GenerationParams"),
    ("rapo.tools.retrieval", "Modifier"),
]


# Where a prompt file's records keep the prompt itself; every other field is the prompt's metadata.
PROMPT_KEYS = ("prompt", "prompt_en", "caption", "captions", "text")


class PromptItem(BaseModel):
    """One prompt of a prompt file, with what the file says about it besides its text."""

    text: str
    meta: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="The record's other fields: PhyGenBench's `physical_laws`, VBench's `dimension`, a category.",
    )


def read_prompt_list(path: Path) -> list[PromptItem]:
    """Prompts, with their metadata, from a prompt file.

    `.txt`: one prompt a line. `.jsonl`: one object a line. `.json`: a list of objects (VBench's
    `VBench_full_info.json`, PhyGenBench's `prompts.json`). `.csv`: a header row (RAPO's SSPO `examples.csv`).
    A record's prompt is its first key of PROMPT_KEYS; its other fields are its metadata.
    """
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputFileError(f"prompt file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputFileError(f"{path}: not valid UTF-8 JSON ({exc})") from None
        if not isinstance(data, list):
            raise InputFileError(f"{path}: expected a list of objects, each with one of {', '.join(PROMPT_KEYS)}")
        items = [_item(record, f"{path}: item {i}") for i, record in enumerate(data)]
    elif path.suffix == ".jsonl":
        items = []
        for number, line in read_lines(path):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise InputFileError(f"{path}:{number}: not a JSON object") from None
                items.append(_item(record, f"{path}:{number}"))
    elif path.suffix == ".csv":
        lines = [line for _, line in read_lines(path)]
        rows = list(csv.DictReader(lines))
        items = [_item(row, f"{path}:{i + 2}") for i, row in enumerate(rows)]
    else:
        items = [PromptItem(text=line) for _, line in read_lines(path) if line.strip()]
    if not items:
        raise InputFileError(f"{path}: no prompts")
    return [PromptItem(text=item.text.strip(), meta=item.meta) for item in items]


def _item(record: object, where: str) -> PromptItem:
    key = next((k for k in PROMPT_KEYS if isinstance(record, dict) and isinstance(record.get(k), str)), None)
    if key is None:
        raise InputFileError(f"{where}: expected an object with one of the keys {', '.join(PROMPT_KEYS)}")
    return PromptItem(text=record[key], meta={k: v for k, v in record.items() if k != key and v not in ("", None)})


def checkpointer(run_dir: Path, store: str | None = None) -> BaseCheckpointSaver:
    """LangGraph's checkpointer, reading back only this package's state types.

    SQLite in the run dir by default; with a `postgresql://` store, PostgreSQL (`agent/runs/store_pg.py`).
    """
    serde = JsonPlusSerializer(allowed_msgpack_modules=_CHECKPOINT_TYPES)
    if is_postgres_url(store):
        from rapo.agent.runs.store_pg import postgres_checkpointer

        return postgres_checkpointer(str(store), serde)
    conn = sqlite3.connect(run_dir / "checkpoints.sqlite", check_same_thread=False)
    return SqliteSaver(conn, serde=serde)


class RunInfo(BaseModel):
    """`run.json`: what a run dir holds, written when the run starts."""

    run_id: str
    prompts_file: str
    prompts_sha256: str
    settings: dict


def open_run(run_dir: Path, prompts_file: Path, prompts: list[PromptItem], settings: dict, resume: bool) -> RunInfo:
    """Start a run in a new run dir, or reopen one with --resume (same prompts and metadata required)."""
    info_path = run_dir / "run.json"
    digest = prompts_digest(prompts)
    if info_path.exists():
        if not resume:
            raise RapoError(f"{run_dir} holds a run already: add --resume to continue it, or choose another --out")
        info = RunInfo.model_validate_json(info_path.read_text())
        if info.prompts_sha256 != digest:
            raise RapoError(f"{prompts_file} is not the prompt list that run {info.run_id} in {run_dir} started with")
        return info
    if resume:
        raise RapoError(f"nothing to resume: {info_path} does not exist")
    run_dir.mkdir(parents=True, exist_ok=True)
    info = RunInfo(
        run_id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
        prompts_file=str(prompts_file),
        prompts_sha256=digest,
        settings=settings,
    )
    partial = info_path.with_suffix(".partial")
    partial.write_text(info.model_dump_json(indent=2))
    partial.replace(info_path)
    return info


def prompts_digest(prompts: list[PromptItem]) -> str:
    """SHA-256 of the texts, one a line; with the metadata as JSON lines when any prompt has some."""
    if not any(p.meta for p in prompts):  # the digest of runs made before prompts had metadata
        return hashlib.sha256("\n".join(p.text for p in prompts).encode()).hexdigest()
    return hashlib.sha256("\n".join(jsonl_line(p.model_dump()) for p in prompts).encode()).hexdigest()


def default_overlap(real_model: bool) -> int:
    """Prompts in flight at once when `--overlap` is not given: 2 with a real video model, 1 with a tiny one.

    One prompt's critics and revision (about 12 s of flow a 480x832 video on one core, plus the LLM) fit inside
    another's renders (27.6 s a Wan2.1-1.3B video at 20 steps), so a second prompt keeps the GPU busy. A tiny
    pipeline renders on the CPU in 0.1 s: a second prompt would only compete for the same cores.
    """
    return 2 if real_model else 1


def optimize(
    prompts: list[PromptItem], info: RunInfo, ctx: Context, store_url: str | None = None, overlap: int = 1
) -> list[dict]:
    """Run the SSPO graph for every prompt not done yet; a failing prompt is recorded and the batch goes on.

    `store_url` is a `postgresql://` URL for the trajectory store and checkpoints; by default both are SQLite
    files in the run dir. `overlap` is how many prompts run at once (threads; see the module docstring); the
    schedule changes, the results do not. Returns the rows of `best_prompts.jsonl`, which is (re)written when the
    batch ends. Ctrl-C with overlap stops every prompt after its current node (each resumes from there).
    """
    if overlap < 1:
        raise ValueError(f"`overlap` must be at least 1, got {overlap}")
    run_dir = ctx.run_dir
    store = TrajectoryStore(store_url or run_dir / "trajectory.sqlite")
    store.start_run(info.run_id, info.settings, [p.text for p in prompts], [p.meta for p in prompts])
    graph = builder.compile(checkpointer=checkpointer(run_dir, store_url))
    status = {row.prompt_id: row.status for row in store.prompts(info.run_id)}
    todo = [(prompt_id, prompt) for prompt_id, prompt in enumerate(prompts) if status[prompt_id] != "done"]
    stop = threading.Event()
    with progress_bar() as bar:  # rich's Progress takes its own lock on every update
        overall = bar.add_task("prompts", total=len(prompts), completed=len(prompts) - len(todo))

        def one(item: tuple[int, PromptItem]) -> None:
            prompt_id, prompt = item
            if stop.is_set():
                return
            current = bar.add_task(f"  #{prompt_id} {prompt.text[:40]}", total=None)

            def show(text: str) -> None:
                bar.update(current, description=text)

            try:
                run_prompt(graph, store, info.run_id, prompt_id, prompt, ctx, show, stop=stop)
            finally:
                bar.remove_task(current)
            if not stop.is_set():
                bar.advance(overall)

        if overlap == 1:  # in this thread, as before
            for item in todo:
                one(item)
        else:
            with ThreadPoolExecutor(max_workers=overlap, thread_name_prefix="rapo-prompt") as pool:
                try:
                    for _ in pool.map(one, todo):  # in input order; a prompt starts when one ends
                        pass
                except BaseException:  # Ctrl-C: no new prompt starts; those in flight stop after their node
                    stop.set()
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    return finish_run(store, info.run_id, run_dir)


def finish_run(store: TrajectoryStore, run_id: str, run_dir: Path) -> list[dict]:
    """Write `best_prompts.jsonl` from the store (every prompt, input order), close the store, return the rows."""
    rows = [row.model_dump(mode="json") for row in store.prompts(run_id)]
    _write_jsonl(run_dir / "best_prompts.jsonl", rows)
    store.close()
    return rows


def run_prompt(  # noqa: ANN001
    graph,
    store: TrajectoryStore,
    run_id: str,
    prompt_id: int,
    prompt: PromptItem,
    ctx: Context,
    show,
    stop: threading.Event | None = None,
) -> None:
    """One prompt through the graph, from its thread's last checkpoint; a failure is recorded, never raised.

    When `stop` is set the prompt stops after its current node, left `running` with its checkpoint on disk, as a
    killed run leaves it: `--resume` carries it on.
    """
    try:
        _optimize_one(graph, store, run_id, prompt_id, prompt, ctx, show, stop)
    except Exception as exc:  # noqa: BLE001 - one prompt's failure never stops the batch
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        store.set_status(run_id, prompt_id, "failed", error)
        stderr.print(f"prompt {prompt_id}: failed: {error}", markup=False, highlight=False)


def _optimize_one(  # noqa: ANN001
    graph, store: TrajectoryStore, run_id: str, prompt_id: int, prompt: PromptItem, ctx: Context, show, stop
) -> None:
    config = {"configurable": {"thread_id": f"{run_id}:{prompt_id}"}, "recursion_limit": 10 + 6 * ctx.config.max_iters}
    snapshot = graph.get_state(config)
    if snapshot.values and not snapshot.next:  # the graph finished, but the process died before the store knew
        values = snapshot.values
    else:
        store.set_status(run_id, prompt_id, "running")
        # None resumes the thread
        start = None if snapshot.values else SSPOState(input=check_prompt(prompt.text), meta=prompt.meta)
        values = {}
        # "sync": each checkpoint is on disk before the next node runs. LangGraph's default ("async") writes it
        # while the next node runs, so a SIGKILL can leave a checkpoint half-committed (langgraph#8039, #8764).
        for values in graph.stream(start, config, context=ctx, stream_mode="values", durability="sync"):
            _record(store, run_id, prompt_id, values)
            show(f"  #{prompt_id} round {values.get('iteration', 0)}, {values.get('videos_made', 0)} videos")
            if stop is not None and stop.is_set():
                return
    _record(store, run_id, prompt_id, values)
    if values.get("best") is None:
        errors = [c.summary for c in values.get("tool_calls", []) if not c.ok]
        reason = values.get("stop_reason") or "stopped"
        store.set_status(run_id, prompt_id, "failed", f"{reason}: {errors[-1]}" if errors else reason)
        return
    store.finish(run_id, prompt_id, values["best"], values.get("stop_reason") or "stopped")


def _record(store: TrajectoryStore, run_id: str, prompt_id: int, values: dict) -> None:
    evaluated: list[Evaluation] = values.get("evaluated", [])
    calls: list[ToolCall] = values.get("tool_calls", [])
    store.record(run_id, prompt_id, evaluated, list(enumerate(calls)))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text("".join(jsonl_line(r) + "\n" for r in rows), encoding="utf-8")
    partial.replace(path)
