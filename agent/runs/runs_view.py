"""A run dir as data for people: its prompts, each with its rounds, evaluations and tool calls (UI and CLI)."""

from __future__ import annotations

import json
from pathlib import Path

from rapo.agent.runs.trajectory import TrajectoryStore, open_run_dir
from rapo.common import RapoError


def run_summary(index: int, run_dir: Path) -> dict:
    """A run dir's id and prompt counts, or the reason it cannot be read."""
    try:
        store, run_id = open_run_dir(run_dir)
    except RapoError as exc:
        return {"index": index, "dir": str(run_dir), "error": str(exc)}
    try:
        return _summary(index, run_dir, store, run_id)
    finally:
        store.close()


def run_detail(index: int, run_dir: Path) -> dict:
    """Every prompt of a run dir's run with its rounds, evaluations and tool calls."""
    store, run_id = open_run_dir(run_dir)
    info = run_dir / "run.json"
    settings = json.loads(info.read_text()).get("settings", {}) if info.is_file() else {}
    try:
        summary = _summary(index, run_dir, store, run_id)
        prompts = []
        for row in store.prompts(run_id):
            evaluations = store.evaluations(run_id, row.prompt_id)
            rounds = [[e for e in evaluations if e.iteration == r] for r in sorted({e.iteration for e in evaluations})]
            calls = store.tool_calls(run_id, row.prompt_id)
            prompts.append({"row": row, "rounds": rounds, "evaluations": evaluations, "tool_calls": calls})
    finally:
        store.close()
    return {**summary, "settings": settings, "prompts": prompts, "evals": eval_tables(run_dir)}


def eval_tables(run_dir: Path) -> list[dict]:
    """The benchmark scores `rapo eval score` left in the run dir: bench, variants, rows (group, scores), plot."""
    out = []
    for path in sorted(run_dir.glob("eval/*/scores.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            variants, table = data["variants"], data["table"]
        except (OSError, ValueError, KeyError):
            continue  # being written, or not ours: the page shows the rest
        rows = [(group, [table[group].get(v) for v in variants]) for group in data["groups"] if group in table]
        means = [[r[i] for _, r in rows if r[i] is not None] for i in range(len(variants))]
        rows.append(("mean", [sum(m) / len(m) if m else None for m in means]))
        plot = path.with_name("scores.png")
        out.append({"bench": data["bench"], "variants": variants, "rows": rows,
                    "plot": str(plot.relative_to(run_dir)) if plot.is_file() else None})  # fmt: skip
    return out


def _summary(index: int, run_dir: Path, store: TrajectoryStore, run_id: str) -> dict:
    created, counts = next((c, n) for r, c, n in store.runs() if r == run_id)
    return {"index": index, "dir": str(run_dir), "run_id": run_id, "created": created, "counts": counts}


def detail_json(detail: dict) -> dict:
    """`run_detail`'s result with its pydantic models as plain JSON values."""
    return json.loads(json.dumps(detail, default=lambda o: o.model_dump(mode="json")))
