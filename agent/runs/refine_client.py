"""The client side of `rapo serve`: find a running server with the same models, and refine through it.

A server writes `$RAPO_HOME/servers/<pid>.json` (its URL and the identity of what it loaded) once its models are
loaded, and removes it on exit. `rapo refine` looks there first: a server whose identity matches the models the
command would load answers instead, so the command imports no torch and loads no model. Light to import: the
standard library's HTTP client and pydantic only.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import BaseModel

from rapo_common import RapoError, rapo_home
from tools.stage1 import Stage1Result, Stage1Settings


class ServerIdentity(BaseModel):
    """What a server loaded; a client uses it only when its own options resolve to the same."""

    graph: str
    llm: str | None
    adapter: str | None
    discriminator: str | None
    llm_dtype: str


class ServerInfo(BaseModel):
    """A running server's discovery file."""

    url: str
    pid: int
    identity: ServerIdentity


def servers_dir() -> Path:
    """Where running servers announce themselves."""
    return rapo_home() / "servers"


def identity(graph: str | Path, llm: str | None, adapter: str | Path | None, discriminator: str | Path | None,
             llm_dtype: str) -> ServerIdentity:  # fmt: skip
    """The identity of a Stage 1 setup, with paths made absolute so that two spellings of one folder match."""

    def absolute(value: str | Path | None) -> str | None:
        if value is None or "://" in str(value) or str(value).startswith("openai:") or str(value) == "none":
            return None if value is None else str(value)
        return str(Path(value).expanduser().resolve())

    return ServerIdentity(graph=absolute(graph) or "", llm=absolute(llm), adapter=absolute(adapter),
                          discriminator=absolute(discriminator), llm_dtype=llm_dtype)  # fmt: skip


def find_server(wanted: ServerIdentity) -> ServerInfo | None:
    """A live server with this identity; discovery files of dead servers are removed on the way."""
    folder = servers_dir()
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        try:
            info = ServerInfo.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being written
        if not _alive(info.pid):
            path.unlink(missing_ok=True)
            continue
        if info.identity == wanted:
            return info
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RemoteStage1:
    """Stage 1 on a `rapo serve` process: the `run` and `load` of `tools.stage1.Stage1`, over HTTP."""

    concurrency = 1  # the server runs one prompt at a time (one model)

    def __init__(self, server: ServerInfo, settings: Stage1Settings) -> None:
        self.server = server
        self.settings = settings
        self.llm = self  # `refine_file` reads `pipeline.llm.concurrency`

    def load(self) -> None:
        """Nothing to load: the server has."""

    def run_many(self, prompts: list[str], seed: int = 0) -> list[Stage1Result]:
        """`run` for each prompt, one request at a time (the server runs one prompt at a time anyway)."""
        return [self.run(prompt, seed) for prompt in prompts]

    def run(self, prompt: str, seed: int = 0) -> Stage1Result:
        """One prompt through the server's Stage 1; the server's errors come back as RapoError."""
        body = json.dumps({"prompt": prompt, "seed": seed, "settings": self.settings.model_dump(mode="json")})
        request = urllib.request.Request(
            f"{self.server.url}/refine", data=body.encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=3600) as response:
                return Stage1Result.model_validate_json(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]
            except (ValueError, KeyError):
                message = f"HTTP {exc.code}"
            raise RapoError(message) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise RapoError(f"the rapo server at {self.server.url} stopped answering: {exc}; add --local") from None
