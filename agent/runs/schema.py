"""The trajectory store's schema, the same on SQLite and PostgreSQL, and its migrations.

A versioned schema table (`rapo_schema`: one row per applied migration) rather than Alembic: the store has a
handful of tables whose DDL is portable as written, so each migration is a list of plain SQL statements applied
once, in order, in one transaction with its row in `rapo_schema` (on PostgreSQL under an advisory lock, on SQLite
under the file's write lock), so workers that open the store at the same moment migrate it exactly once. Alembic
would add SQLAlchemy, a migrations folder and an env.py for the same outcome. Stores written before versioning
(the four tables of version 1 without `rapo_schema`) are adopted: version 1 only creates what is missing.

Column types are the common subset: TEXT, INTEGER, DOUBLE PRECISION (REAL is 4 bytes on PostgreSQL, too small
for a timestamp; SQLite reads the name as its 8-byte REAL).
"""

from __future__ import annotations

import time

from rapo.agent.runs.db import Cursor, Database
from rapo.common import RapoError

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "runs, prompts, evaluated candidates, tool calls",
        [
            "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL,"
            " config TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS prompts (run_id TEXT NOT NULL REFERENCES runs (run_id),"
            " prompt_id INTEGER NOT NULL, input TEXT NOT NULL,"
            " status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),"
            " best_prompt TEXT, best_scores TEXT, best_video TEXT, stop_reason TEXT, error TEXT,"
            " updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, prompt_id))",
            "CREATE TABLE IF NOT EXISTS evaluations (run_id TEXT NOT NULL, prompt_id INTEGER NOT NULL,"
            " iteration INTEGER NOT NULL, idx INTEGER NOT NULL, prompt TEXT NOT NULL, video TEXT, video_key TEXT,"
            " scores TEXT NOT NULL, feedback TEXT NOT NULL, error TEXT,"
            " PRIMARY KEY (run_id, prompt_id, iteration, idx))",
            "CREATE TABLE IF NOT EXISTS tool_calls (run_id TEXT NOT NULL, prompt_id INTEGER NOT NULL,"
            " seq INTEGER NOT NULL, tool TEXT NOT NULL, args TEXT NOT NULL, summary TEXT NOT NULL,"
            " seconds DOUBLE PRECISION NOT NULL, ok INTEGER NOT NULL, PRIMARY KEY (run_id, prompt_id, seq))",
        ],
    ),
    (
        2,
        "prompt attempts (dead workers); video claims and the log of generator calls",
        [
            "ALTER TABLE prompts ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
            # One row per video being made or made: the primary key is the claim, taken by an INSERT.
            "CREATE TABLE video_claims (run_id TEXT NOT NULL, video_key TEXT NOT NULL, owner TEXT NOT NULL,"
            " state TEXT NOT NULL CHECK (state IN ('claimed', 'done')), claimed_at DOUBLE PRECISION NOT NULL,"
            " expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, video_key))",
            # One row per real pipeline call (never per cache hit): how tests and operators count generations.
            "CREATE TABLE video_generations (call_id TEXT PRIMARY KEY, run_id TEXT NOT NULL,"
            " video_key TEXT NOT NULL, owner TEXT NOT NULL, seconds DOUBLE PRECISION NOT NULL,"
            " at DOUBLE PRECISION NOT NULL)",
        ],
    ),
    (
        3,
        "prompt metadata from the prompt file (a benchmark's physical law, dimension, category)",
        ["ALTER TABLE prompts ADD COLUMN meta TEXT NOT NULL DEFAULT '{}'"],
    ),
    (
        4,
        "each candidate's scores per noise seed (--seeds)",
        ["ALTER TABLE evaluations ADD COLUMN seed_scores TEXT NOT NULL DEFAULT '{}'"],
    ),
]
LATEST = MIGRATIONS[-1][0]


def migrate(db: Database) -> int:
    """Bring the store's schema to `LATEST`; returns the version it was at before.

    Raises:
        RapoError: the store was written by a newer rapo (its version is above `LATEST`).
    """

    def apply(cursor: Cursor) -> int:
        db.lock_schema(cursor)
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS rapo_schema (version INTEGER PRIMARY KEY,"
            " applied_at DOUBLE PRECISION NOT NULL, description TEXT NOT NULL)"
        )
        row = cursor.execute("SELECT max(version) FROM rapo_schema").fetchone()
        current = (row[0] if row else None) or 0
        if current > LATEST:
            raise RapoError(
                f"the trajectory store {db.location} has schema version {current}; this rapo knows up to {LATEST}:"
                " upgrade rapo"
            )
        for version, description, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    cursor.execute(statement)
                cursor.execute("INSERT INTO rapo_schema VALUES (?, ?, ?)", (version, time.time(), description))
        return current

    return db.run(apply)
