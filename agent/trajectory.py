"""The trajectory store: runs, prompts, evaluated candidates and tool calls in one SQLite file (WAL).

The batch runner writes each node's update as the graph streams it. Every row has a natural key,
so a node that LangGraph re-executes after a crash overwrites its own rows instead of adding twins.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from pydantic import BaseModel

from agent.state import Evaluation, ToolCall
from graph_db.errors import RapoError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created_at REAL NOT NULL, config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS prompts (
    run_id TEXT NOT NULL REFERENCES runs (run_id), prompt_id INTEGER NOT NULL, input TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    best_prompt TEXT, best_scores TEXT, best_video TEXT, stop_reason TEXT, error TEXT, updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, prompt_id)
);
CREATE TABLE IF NOT EXISTS evaluations (
    run_id TEXT NOT NULL, prompt_id INTEGER NOT NULL, iteration INTEGER NOT NULL, idx INTEGER NOT NULL,
    prompt TEXT NOT NULL, video TEXT, video_key TEXT, scores TEXT NOT NULL, feedback TEXT NOT NULL, error TEXT,
    PRIMARY KEY (run_id, prompt_id, iteration, idx)
);
CREATE TABLE IF NOT EXISTS tool_calls (
    run_id TEXT NOT NULL, prompt_id INTEGER NOT NULL, seq INTEGER NOT NULL, tool TEXT NOT NULL, args TEXT NOT NULL,
    summary TEXT NOT NULL, seconds REAL NOT NULL, ok INTEGER NOT NULL,
    PRIMARY KEY (run_id, prompt_id, seq)
);
"""


class PromptRow(BaseModel):
    """A prompt's status and outcome in a run."""

    prompt_id: int
    input: str
    status: str
    best_prompt: str | None = None
    best_scores: dict[str, float] | None = None
    best_video: str | None = None
    stop_reason: str | None = None
    error: str | None = None


class TrajectoryStore:
    """One run dir's store (`trajectory.sqlite`); safe to reopen after a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            with self._conn:
                self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RapoError(f"not a readable trajectory store: {path} ({exc})") from None

    def start_run(self, run_id: str, config: dict, prompts: list[str]) -> None:
        """Record the run and its prompts as pending; a resumed run keeps what it has."""
        with self._conn:
            self._conn.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?)", (run_id, time.time(), json.dumps(config, default=str))
            )
            self._conn.executemany(
                "INSERT OR IGNORE INTO prompts (run_id, prompt_id, input, status, updated_at) "
                "VALUES (?, ?, ?, 'pending', ?)",
                [(run_id, i, p, time.time()) for i, p in enumerate(prompts)],
            )

    def run_config(self, run_id: str) -> dict | None:
        """The recorded configuration of a run, or None if the run is unknown."""
        row = self._conn.execute("SELECT config FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_status(self, run_id: str, prompt_id: int, status: str, error: str | None = None) -> None:
        """Mark a prompt pending, running, done or failed."""
        with self._conn:
            self._conn.execute(
                "UPDATE prompts SET status = ?, error = ?, updated_at = ? WHERE run_id = ? AND prompt_id = ?",
                (status, error, time.time(), run_id, prompt_id),
            )

    def record(
        self, run_id: str, prompt_id: int, evaluations: list[Evaluation], calls: list[tuple[int, ToolCall]]
    ) -> None:
        """Upsert evaluated candidates and (sequence number, tool call) pairs in one transaction."""
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, prompt_id, e.iteration, e.index, e.prompt, e.video, e.video_key,
                     json.dumps(e.scores), json.dumps(e.feedback), e.error)
                    for e in evaluations
                ],
            )  # fmt: skip
            self._conn.executemany(
                "INSERT OR REPLACE INTO tool_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, prompt_id, seq, c.tool, json.dumps(c.args, default=str), c.summary, c.seconds, int(c.ok))
                    for seq, c in calls
                ],
            )

    def finish(self, run_id: str, prompt_id: int, best: Evaluation | None, stop_reason: str) -> None:
        """Record a prompt's best candidate and why its loop stopped, and mark it done."""
        with self._conn:
            self._conn.execute(
                "UPDATE prompts SET status = 'done', best_prompt = ?, best_scores = ?, best_video = ?, stop_reason = ?,"
                " error = NULL, updated_at = ? WHERE run_id = ? AND prompt_id = ?",
                (
                    best.prompt if best else None,
                    json.dumps(best.scores) if best else None,
                    best.video if best else None,
                    stop_reason,
                    time.time(),
                    run_id,
                    prompt_id,
                ),
            )

    def prompts(self, run_id: str) -> list[PromptRow]:
        """Every prompt of a run, in input order."""
        rows = self._conn.execute(
            "SELECT prompt_id, input, status, best_prompt, best_scores, best_video, stop_reason, error FROM prompts "
            "WHERE run_id = ? ORDER BY prompt_id",
            (run_id,),
        ).fetchall()
        return [
            PromptRow(
                prompt_id=r[0], input=r[1], status=r[2], best_prompt=r[3],
                best_scores=json.loads(r[4]) if r[4] else None, best_video=r[5], stop_reason=r[6], error=r[7],
            )
            for r in rows
        ]  # fmt: skip

    def evaluations(self, run_id: str, prompt_id: int) -> list[Evaluation]:
        """A prompt's evaluated candidates, by round and position."""
        rows = self._conn.execute(
            "SELECT iteration, idx, prompt, video, video_key, scores, feedback, error FROM evaluations "
            "WHERE run_id = ? AND prompt_id = ? ORDER BY iteration, idx",
            (run_id, prompt_id),
        ).fetchall()
        return [
            Evaluation(
                iteration=r[0], index=r[1], prompt=r[2], video=r[3], video_key=r[4],
                scores=json.loads(r[5]), feedback=json.loads(r[6]), error=r[7],
            )
            for r in rows
        ]  # fmt: skip

    def tool_calls(self, run_id: str, prompt_id: int) -> list[ToolCall]:
        """A prompt's tool calls in order."""
        rows = self._conn.execute(
            "SELECT tool, args, summary, seconds, ok FROM tool_calls WHERE run_id = ? AND prompt_id = ? ORDER BY seq",
            (run_id, prompt_id),
        ).fetchall()
        return [ToolCall(tool=r[0], args=json.loads(r[1]), summary=r[2], seconds=r[3], ok=bool(r[4])) for r in rows]

    def runs(self) -> list[tuple[str, float, dict[str, int]]]:
        """(run id, created at, prompt counts by status) for every run in this store."""
        out = []
        for run_id, created in self._conn.execute("SELECT run_id, created_at FROM runs ORDER BY created_at").fetchall():
            counts = dict(
                self._conn.execute(
                    "SELECT status, count(*) FROM prompts WHERE run_id = ? GROUP BY status", (run_id,)
                ).fetchall()
            )
            out.append((run_id, created, counts))
        return out

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
