"""The trajectory store: runs, prompts, evaluated candidates and tool calls, in SQLite or PostgreSQL.

By default one SQLite file in the run dir (`trajectory.sqlite`, WAL); with `--store postgresql://...` a database
that every worker of a distributed run writes. The schema and its migrations are in `agent/runs/schema.py`. The batch
runner writes each node's update as the graph streams it. Every row has a natural key, so a node that LangGraph
re-executes after a crash overwrites its own rows instead of adding twins, and a transaction that PostgreSQL's
reconnect logic runs again changes nothing twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, Field

from rapo.agent.loop.state import Evaluation, ToolCall
from rapo.agent.runs.db import Cursor, Database, open_database
from rapo.agent.runs.schema import migrate
from rapo.common import RapoError


class PromptRow(BaseModel):
    """A prompt's status and outcome in a run."""

    prompt_id: int
    input: str
    meta: dict = Field(default_factory=dict, description="What the prompt file says about the prompt.")
    status: str
    best_prompt: str | None = None
    best_scores: dict[str, float] | None = None
    best_video: str | None = None
    stop_reason: str | None = None
    error: str | None = None


class TrajectoryStore:
    """A run's store: `trajectory.sqlite` in the run dir, or a PostgreSQL database; safe to reopen after a crash.

    Args:
        location: a SQLite file, or a `postgresql://` URL.

    Raises:
        RapoError: the file is not a SQLite database, the server cannot be reached, or the schema is newer than
            this rapo's.
    """

    def __init__(self, location: Path | str) -> None:
        self.db: Database = open_database(location)
        self.location = self.db.location
        migrate(self.db)

    def start_run(self, run_id: str, config: dict, prompts: list[str], metas: list[dict] | None = None) -> None:
        """Record the run and its prompts (with each one's metadata) as pending; a resumed run keeps what it has."""
        metas = metas or [{} for _ in prompts]
        now = time.time()

        def work(cur: Cursor) -> None:
            cur.execute(
                "INSERT INTO runs VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (run_id, now, json.dumps(config, default=str)),
            )
            cur.executemany(
                "INSERT INTO prompts (run_id, prompt_id, input, meta, status, updated_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                [(run_id, i, p, json.dumps(m), now) for i, (p, m) in enumerate(zip(prompts, metas, strict=True))],
            )

        self.db.run(work)

    def run_config(self, run_id: str) -> dict | None:
        """The recorded configuration of a run, or None if the run is unknown."""
        row = self.db.run(lambda cur: cur.execute("SELECT config FROM runs WHERE run_id = ?", (run_id,)).fetchone())
        return json.loads(row[0]) if row else None

    def set_status(self, run_id: str, prompt_id: int, status: str, error: str | None = None) -> None:
        """Mark a prompt pending, running, done or failed."""
        args = (status, error, time.time(), run_id, prompt_id)
        self.db.run(
            lambda cur: cur.execute(
                "UPDATE prompts SET status = ?, error = ?, updated_at = ? WHERE run_id = ? AND prompt_id = ?", args
            )
        )

    def add_attempt(self, run_id: str, prompt_id: int, reason: str) -> int:
        """Count one more attempt at a prompt whose worker died (the reason kept as its error); returns the count."""
        args = (reason, time.time(), run_id, prompt_id)

        def work(cur: Cursor) -> int:
            cur.execute(
                "UPDATE prompts SET attempts = attempts + 1, error = ?, updated_at = ? "
                "WHERE run_id = ? AND prompt_id = ?",
                args,
            )
            row = cur.execute("SELECT attempts FROM prompts WHERE run_id = ? AND prompt_id = ?", args[2:]).fetchone()
            return int(row[0]) if row else 0

        return self.db.run(work)

    def record(
        self, run_id: str, prompt_id: int, evaluations: list[Evaluation], calls: list[tuple[int, ToolCall]]
    ) -> None:
        """Upsert evaluated candidates and (sequence number, tool call) pairs in one transaction."""
        evaluation_rows = [
            (run_id, prompt_id, e.iteration, e.index, e.prompt, e.video, e.video_key,
             json.dumps(e.scores), json.dumps(e.feedback), e.error, json.dumps(e.seed_scores))
            for e in evaluations
        ]  # fmt: skip
        call_rows = [
            (run_id, prompt_id, seq, c.tool, json.dumps(c.args, default=str), c.summary, c.seconds, int(c.ok))
            for seq, c in calls
        ]

        def work(cur: Cursor) -> None:
            cur.executemany(
                "INSERT INTO evaluations (run_id, prompt_id, iteration, idx, prompt, video, video_key, scores, "
                "feedback, error, seed_scores) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, prompt_id, iteration, idx) DO UPDATE SET prompt = excluded.prompt, "
                "video = excluded.video, video_key = excluded.video_key, scores = excluded.scores, "
                "feedback = excluded.feedback, error = excluded.error, seed_scores = excluded.seed_scores",
                evaluation_rows,
            )
            cur.executemany(
                "INSERT INTO tool_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, prompt_id, seq) DO UPDATE SET tool = excluded.tool, args = excluded.args, "
                "summary = excluded.summary, seconds = excluded.seconds, ok = excluded.ok",
                call_rows,
            )

        self.db.run(work)

    def finish(self, run_id: str, prompt_id: int, best: Evaluation | None, stop_reason: str) -> None:
        """Record a prompt's best candidate and why its loop stopped, and mark it done."""
        args = (
            best.prompt if best else None,
            json.dumps(best.scores) if best else None,
            best.video if best else None,
            stop_reason,
            time.time(),
            run_id,
            prompt_id,
        )
        self.db.run(
            lambda cur: cur.execute(
                "UPDATE prompts SET status = 'done', best_prompt = ?, best_scores = ?, best_video = ?, stop_reason = ?,"
                " error = NULL, updated_at = ? WHERE run_id = ? AND prompt_id = ?",
                args,
            )
        )

    def prompts(self, run_id: str) -> list[PromptRow]:
        """Every prompt of a run, in input order."""
        rows = self._select(
            "SELECT prompt_id, input, status, best_prompt, best_scores, best_video, stop_reason, error, meta "
            "FROM prompts WHERE run_id = ? ORDER BY prompt_id",
            (run_id,),
        )
        return [
            PromptRow(
                prompt_id=r[0], input=r[1], status=r[2], best_prompt=r[3],
                best_scores=json.loads(r[4]) if r[4] else None, best_video=r[5], stop_reason=r[6], error=r[7],
                meta=json.loads(r[8]),
            )
            for r in rows
        ]  # fmt: skip

    def evaluations(self, run_id: str, prompt_id: int) -> list[Evaluation]:
        """A prompt's evaluated candidates, by round and position."""
        rows = self._select(
            "SELECT iteration, idx, prompt, video, video_key, scores, feedback, error, seed_scores FROM evaluations "
            "WHERE run_id = ? AND prompt_id = ? ORDER BY iteration, idx",
            (run_id, prompt_id),
        )
        return [
            Evaluation(
                iteration=r[0], index=r[1], prompt=r[2], video=r[3], video_key=r[4],
                scores=json.loads(r[5]), feedback=json.loads(r[6]), error=r[7], seed_scores=json.loads(r[8]),
            )
            for r in rows
        ]  # fmt: skip

    def tool_calls(self, run_id: str, prompt_id: int) -> list[ToolCall]:
        """A prompt's tool calls in order."""
        rows = self._select(
            "SELECT tool, args, summary, seconds, ok FROM tool_calls WHERE run_id = ? AND prompt_id = ? ORDER BY seq",
            (run_id, prompt_id),
        )
        return [ToolCall(tool=r[0], args=json.loads(r[1]), summary=r[2], seconds=r[3], ok=bool(r[4])) for r in rows]

    def runs(self) -> list[tuple[str, float, dict[str, int]]]:
        """(run id, created at, prompt counts by status) for every run in this store."""

        def work(cur: Cursor) -> list[tuple[str, float, dict[str, int]]]:
            out = []
            for run_id, created in cur.execute("SELECT run_id, created_at FROM runs ORDER BY created_at").fetchall():
                counts = cur.execute(
                    "SELECT status, count(*) FROM prompts WHERE run_id = ? GROUP BY status", (run_id,)
                ).fetchall()
                out.append((run_id, created, {status: int(n) for status, n in counts}))
            return out

        return self.db.run(work)

    def _select(self, sql: str, params: tuple) -> list[tuple]:
        return self.db.run(lambda cur: cur.execute(sql, params).fetchall())

    def close(self) -> None:
        """Close the connection."""
        self.db.close()


def open_run_dir(run_dir: Path) -> tuple[TrajectoryStore, str]:
    """The store of a run dir written by `rapo optimize`, and the id of the run it holds.

    The store is `trajectory.sqlite` in the dir, or the PostgreSQL database that `run.json` names (its URL without
    the password: libpq reads that from $PGPASSWORD or ~/.pgpass). A shared database holds many runs, so the run
    is `run.json`'s; a dir without `run.json` is read as its SQLite file's latest run.

    Raises:
        RapoError: the dir holds neither file, or the store does not hold the run.
    """
    info_path, sqlite_path = run_dir / "run.json", run_dir / "trajectory.sqlite"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise RapoError(f"{info_path}: unreadable ({exc})") from None
    location = info.get("settings", {}).get("store") or sqlite_path
    if location == sqlite_path and not sqlite_path.is_file():
        raise RapoError(f"not a run dir: {sqlite_path} not found")
    store = TrajectoryStore(location)
    run_id = info.get("run_id") or next((r for r, _, _ in reversed(store.runs())), None)
    if run_id is None or store.run_config(run_id) is None:
        store.close()
        raise RapoError(f"{run_dir}: the store {store.location} holds no run {run_id or ''}".rstrip())
    return store, run_id
