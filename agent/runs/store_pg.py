"""The trajectory store and LangGraph's checkpointer on a PostgreSQL server (psycopg 3).

Selected by `--store postgresql://USER@HOST:PORT/DATABASE`. The password comes from libpq's own places
($PGPASSWORD, ~/.pgpass) or the URL; run.json and messages record the URL without it. A lost connection (the
server restarts, a failover) is not an error for the run: transactions are retried on a new connection for up
to `$RAPO_STORE_RECONNECT_S` seconds (default 120) before the run gives up with a one-line error.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from rapo.common import RapoError, ServiceError

logger = logging.getLogger(__name__)

T = TypeVar("T")
_SCHEMA_LOCK = 0x7261706F  # "rapo": the advisory lock that serialises migrations


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise RapoError("a postgresql:// store needs psycopg 3: pip install 'rapo[scale]'") from None
    return psycopg


def redact(url: str) -> str:
    """The URL without its password: what run.json and messages show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def reconnect_seconds() -> float:
    """How long a lost connection is retried ($RAPO_STORE_RECONNECT_S, default 120 s)."""
    return float(os.environ.get("RAPO_STORE_RECONNECT_S") or 120)


def retrying(what: str, url: str, call: Callable[[], T], on_error: Callable[[], None] = lambda: None) -> T:
    """`call()`, repeated after a lost connection until it succeeds or `reconnect_seconds()` pass."""
    psycopg = _psycopg()
    deadline = None
    while True:
        try:
            return call()
        except psycopg.OperationalError as exc:
            on_error()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            deadline = deadline or time.monotonic() + reconnect_seconds()
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"PostgreSQL at {redact(url)}: {what} failed for {reconnect_seconds():g} s: {first}"
                ) from None
            logger.warning("PostgreSQL at %s: %s: %s; retrying", redact(url), what, first)
            time.sleep(0.5)


class _Cursor:
    """A psycopg cursor that takes the store's `?` placeholders."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: tuple | list = ()) -> _Cursor:
        self._cursor.execute(sql.replace("?", "%s"), params)
        return self

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        if rows:
            self._cursor.executemany(sql.replace("?", "%s"), rows)

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()


class PostgresDatabase:
    """One connection to a PostgreSQL database, reopened when it is lost.

    Raises:
        ServiceError: the server cannot be reached or refuses the login when the store opens.
    """

    dialect: Literal["postgresql"] = "postgresql"

    def __init__(self, url: str) -> None:
        self._url = url
        self.location = redact(url)
        self._lock = threading.Lock()
        psycopg = _psycopg()
        try:
            self._conn = self._connect()
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ServiceError(f"cannot reach PostgreSQL at {self.location}: {first}") from None

    def _connect(self) -> Any:
        return _psycopg().connect(self._url, autocommit=True, connect_timeout=5)

    def run(self, work: Callable[[Any], T]) -> T:
        """`work(cursor)` in one transaction, run again on a new connection if the connection is lost."""

        def attempt() -> T:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            with self._conn.transaction(), self._conn.cursor() as cursor:
                return work(_Cursor(cursor))

        def drop() -> None:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

        with self._lock:
            return retrying("a transaction", self._url, attempt, drop)

    def lock_schema(self, cursor: Any) -> None:
        """A transaction-scoped advisory lock, so two workers starting at once migrate one after the other."""
        cursor.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()


def postgres_checkpointer(url: str, serde: Any) -> Any:
    """LangGraph's PostgresSaver over a small pool, its own tables set up, its writes retried after a lost connection.

    The pool checks each connection before lending it, so a server restart costs one failed write, which is
    retried; the checkpointer's writes are upserts, safe to repeat.
    """
    _psycopg()
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    class RetryingPostgresSaver(PostgresSaver):
        def get_tuple(self, config):  # noqa: ANN001, ANN202, D102 - LangGraph's signature
            return retrying("reading a checkpoint", url, lambda: super(RetryingPostgresSaver, self).get_tuple(config))

        def put(self, config, checkpoint, metadata, new_versions):  # noqa: ANN001, ANN202, D102
            return retrying(
                "writing a checkpoint",
                url,
                lambda: super(RetryingPostgresSaver, self).put(config, checkpoint, metadata, new_versions),
            )

        def put_writes(self, config, writes, task_id, task_path=""):  # noqa: ANN001, ANN202, D102
            return retrying(
                "writing a checkpoint",
                url,
                lambda: super(RetryingPostgresSaver, self).put_writes(config, writes, task_id, task_path),
            )

    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=4,
        kwargs={"autocommit": True, "prepare_threshold": None, "row_factory": dict_row, "connect_timeout": 5},
        check=ConnectionPool.check_connection,
        open=True,
    )
    saver = RetryingPostgresSaver(pool, serde=serde)

    def setup() -> None:  # LangGraph's setup is not safe to run from two workers at once: serialise it
        with _psycopg().connect(url, autocommit=True, connect_timeout=5) as conn:
            # Poll rather than wait in pg_advisory_lock: a waiting statement holds a snapshot, and the holder's
            # CREATE INDEX CONCURRENTLY would wait for it (a deadlock PostgreSQL cannot see).
            while not conn.execute("SELECT pg_try_advisory_lock(%s)", (_SCHEMA_LOCK + 1,)).fetchone()[0]:
                time.sleep(0.2)
            saver.setup()

    retrying("setting up the checkpointer", url, setup)
    return saver
