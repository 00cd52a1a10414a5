"""Where a Neo4j graph lives and how to log in: URL parsing, credentials, and driver errors as one-line messages.

A graph location is a URL: ``bolt://[USER@]HOST[:PORT][/DATABASE]`` (also ``neo4j://`` and the ``+s`` / ``+ssc``
TLS variants). The user and database may also come from ``$NEO4J_USER`` and ``$NEO4J_DATABASE``. The password
comes only from ``$NEO4J_PASSWORD`` or from the file named by ``$NEO4J_PASSWORD_FILE`` (readable by its owner
only), never from the URL, and it never appears in a location, a message or a result.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, SecretStr

from rapo.common import GraphServerError

SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
DEFAULT_PORT = 7687


def is_server_url(location: object) -> bool:
    """Whether `location` names a Neo4j server (a bolt:// or neo4j:// URL) rather than a graph file."""
    scheme, sep, _ = str(location).partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


class Neo4jSettings(BaseModel):
    """How to reach one Neo4j graph; every field but the URL's parts falls back to an environment variable."""

    url: str = Field(description="The driver URL: scheme://host:port, no user, password or database.")
    user: str = Field(
        default_factory=lambda: _env("NEO4J_USER", "neo4j"), description="Login user ($NEO4J_USER, else neo4j)."
    )
    database: str = Field(
        default_factory=lambda: _env("NEO4J_DATABASE", "neo4j"),
        description="Database holding the graph ($NEO4J_DATABASE, else neo4j).",
    )
    password: SecretStr | None = Field(
        default=None, description="Login password: $NEO4J_PASSWORD, else the file named by $NEO4J_PASSWORD_FILE."
    )

    @property
    def location(self) -> str:
        """The URL recorded in results and messages: no credentials."""
        return f"{self.url}/{self.database}"

    @classmethod
    def from_location(cls, location: str) -> Neo4jSettings:
        """Parse ``scheme://[user@]host[:port][/database]``; the password is read from the environment.

        Raises:
            GraphServerError: the URL carries a password, a query, or is not a server URL.
        """
        if not is_server_url(location):
            raise GraphServerError(f"not a Neo4j URL: {location} (expected bolt://HOST:PORT or neo4j://HOST:PORT)")
        parts = urlsplit(location)
        if parts.password is not None:
            raise GraphServerError(
                f"Neo4j URL {parts.scheme}://{parts.hostname}: put the password in $NEO4J_PASSWORD or "
                "$NEO4J_PASSWORD_FILE, not in the URL"
            )
        if parts.query or parts.fragment:
            raise GraphServerError(f"Neo4j URL {parts.scheme}://{parts.hostname}: unexpected '?' or '#' part")
        if not parts.hostname:
            raise GraphServerError(f"Neo4j URL {location}: no host")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise GraphServerError(f"Neo4j URL {parts.scheme}://{parts.hostname}: the port is not a number") from None
        database = unquote(parts.path.strip("/"))
        if "/" in database:
            raise GraphServerError(f"Neo4j URL {location}: expected at most one path part, the database name")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        fields: dict[str, object] = {"url": f"{parts.scheme.lower()}://{host}:{port}", "password": _password()}
        if parts.username:
            fields["user"] = unquote(parts.username)
        if database:
            fields["database"] = database
        return cls(**fields)


def _password() -> SecretStr | None:
    if password := os.environ.get("NEO4J_PASSWORD"):
        return SecretStr(password)
    name = os.environ.get("NEO4J_PASSWORD_FILE")
    if not name:
        return None
    path = Path(name).expanduser()
    if not path.is_file():
        raise GraphServerError(f"$NEO4J_PASSWORD_FILE names {path}, which is not a file")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GraphServerError(f"$NEO4J_PASSWORD_FILE {path} is readable by others: chmod 600 {path}")
    return SecretStr(path.read_text(encoding="utf-8").strip())


@contextmanager
def server_errors(settings: Neo4jSettings) -> Iterator[None]:
    """Turn the driver's connection, login and database errors into one-line `GraphServerError`s."""
    from neo4j.exceptions import AuthError, ClientError, ConfigurationError, ServiceUnavailable, SessionExpired

    where = settings.location
    try:
        yield
    except AuthError:
        hint = "set $NEO4J_PASSWORD" if settings.password is None else "check $NEO4J_PASSWORD or $NEO4J_PASSWORD_FILE"
        raise GraphServerError(f"Neo4j at {settings.url} refused the login of user '{settings.user}': {hint}") from None
    except (ServiceUnavailable, SessionExpired) as exc:
        raise GraphServerError(f"cannot reach Neo4j at {settings.url}: {_first_line(exc)}") from None
    except ConfigurationError as exc:
        raise GraphServerError(f"Neo4j URL {where}: {_first_line(exc)}") from None
    except ClientError as exc:
        if exc.code and exc.code.endswith("DatabaseNotFound"):
            raise GraphServerError(
                f"database '{settings.database}' does not exist on Neo4j at {settings.url} "
                "(name another with bolt://HOST:PORT/DATABASE or $NEO4J_DATABASE)"
            ) from None
        if exc.code and exc.code.startswith("Neo.ClientError.Security."):
            raise GraphServerError(
                f"Neo4j at {where} denied user '{settings.user}': {_first_line(exc.message or exc)}"
            ) from None
        raise  # anything else is a bug in rapo's Cypher, not the user's input


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
