"""Where the trajectory store lives: a SQLite file (the default) or a PostgreSQL server (`postgresql://...`).

Both backends run the same SQL (written with `?` placeholders and `ON CONFLICT` upserts, which both understand)
through one small interface: `run(work)` calls `work(cursor)` inside one transaction and returns its result.
PostgreSQL's `run` also survives a lost connection (a server restart, a failover): it reconnects and runs the
whole transaction again, so every `work` the store passes must be safe to repeat.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from rapo.common import RapoError

T = TypeVar("T")


def is_postgres_url(location: str | Path | None) -> bool:
    """True for `postgresql://...` and `postgres://...` URLs."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


class Cursor(Protocol):
    """What the store needs of a DB-API cursor; `?` placeholders on every backend."""

    def execute(self, sql: str, params: tuple | list = ()) -> Cursor:
        """Run one statement."""
        ...

    def executemany(self, sql: str, rows: list[tuple]) -> Any:
        """Run one statement for every row."""
        ...

    def fetchone(self) -> tuple | None:
        """The next row of the last statement."""
        ...

    def fetchall(self) -> list[tuple]:
        """The remaining rows of the last statement."""
        ...


class Database(Protocol):
    """A transactional SQL database the trajectory store runs on."""

    dialect: Literal["sqlite", "postgresql"]
    location: str
    """Where it is, without credentials: recorded in run.json and shown in messages."""

    def run(self, work: Callable[[Cursor], T]) -> T:
        """`work(cursor)` in one transaction: committed when it returns, rolled back when it raises."""
        ...

    def lock_schema(self, cursor: Cursor) -> None:
        """Hold a lock, until the transaction ends, that serialises schema migrations between processes."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


class SqliteDatabase:
    """One SQLite file in WAL mode; every transaction takes the write lock at once (`BEGIN IMMEDIATE`).

    Several processes on one machine may share the file (a local Ray run does): a writer waits up to a minute
    for another's transaction instead of failing with "database is locked".
    """

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, path: Path) -> None:
        self.location = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit, so DDL in a migration is inside one too.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._lock = threading.Lock()

    def run(self, work: Callable[[Cursor], T]) -> T:
        """`work(cursor)` between BEGIN IMMEDIATE and COMMIT (ROLLBACK when it raises)."""
        with self._lock:
            cursor = self._conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                result = work(cursor)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
            return result

    def lock_schema(self, cursor: Cursor) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the file's write lock."""

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def open_database(location: str | Path) -> Database:
    """A SQLite file for a path, a PostgreSQL server for a `postgresql://` URL.

    Raises:
        RapoError: the file is not a SQLite database, or the server cannot be reached (one line, before any work).
    """
    if is_postgres_url(location):
        from rapo.agent.runs.store_pg import PostgresDatabase

        return PostgresDatabase(str(location))
    if isinstance(location, str) and "://" in location:
        raise RapoError(f"--store {location!r}: expected a postgresql:// URL (or leave it out for SQLite)")
    try:
        return SqliteDatabase(Path(location))
    except sqlite3.DatabaseError as exc:
        raise RapoError(f"not a readable trajectory store: {location} ({exc})") from None
