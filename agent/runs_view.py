"""A run dir as data for people: its prompts, each with its rounds, evaluations and tool calls (UI and CLI)."""

from __future__ import annotations

import json
from pathlib import Path

from agent.trajectory import TrajectoryStore
from graph_db.errors import RapoError


def run_summary(index: int, run_dir: Path) -> dict:
    """A run dir's id and prompt counts, or the reason it cannot be read."""
    path = run_dir / "trajectory.sqlite"
    if not path.is_file():
        return {"index": index, "dir": str(run_dir), "error": "no trajectory.sqlite"}
    store = TrajectoryStore(path)
    try:
        runs = store.runs()
    finally:
        store.close()
    if not runs:
        return {"index": index, "dir": str(run_dir), "error": "no run recorded"}
    run_id, created, counts = runs[-1]
    return {"index": index, "dir": str(run_dir), "run_id": run_id, "created": created, "counts": counts}


def run_detail(index: int, run_dir: Path) -> dict:
    """Every prompt of a run dir's latest run with its rounds, evaluations and tool calls."""
    summary = run_summary(index, run_dir)
    if "error" in summary:
        raise RapoError(f"{run_dir}: {summary['error']}")
    info = run_dir / "run.json"
    settings = json.loads(info.read_text()).get("settings", {}) if info.is_file() else {}
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    try:
        prompts = []
        for row in store.prompts(summary["run_id"]):
            evaluations = store.evaluations(summary["run_id"], row.prompt_id)
            rounds = [[e for e in evaluations if e.iteration == r] for r in sorted({e.iteration for e in evaluations})]
            calls = store.tool_calls(summary["run_id"], row.prompt_id)
            prompts.append({"row": row, "rounds": rounds, "evaluations": evaluations, "tool_calls": calls})
    finally:
        store.close()
    return {**summary, "settings": settings, "prompts": prompts}


def detail_json(detail: dict) -> dict:
    """`run_detail`'s result with its pydantic models as plain JSON values."""
    return json.loads(json.dumps(detail, default=lambda o: o.model_dump(mode="json")))
