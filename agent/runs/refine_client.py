"""The client side of `rapo serve`: find a running server with the same models, and refine through it.

A server writes `$RAPO_HOME/servers/<pid>.json` (its URL and the identity of what it loaded) once its models are
loaded, and removes it on exit. `rapo refine` and `rapo chat` look there first: a server whose identity matches the
models the command would load answers instead, so the command imports no torch and loads no model. Light to import: the
standard library's HTTP client and pydantic only.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel

from rapo.common import RapoError, rapo_home
from rapo.tools.llm import Decoding, Generation, per_chat
from rapo.tools.retrieval import Retrieval
from rapo.tools.stage1 import Stage1Result, Stage1Settings


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
    """Stage 1 on a `rapo serve` process, over HTTP: what `rapo refine` and a chat's context use of `Stage1`.

    `run`, `run_many`, `load` and `models` as `tools.stage1.Stage1` has them, `lookup` as its `GraphLookup` and
    `llm` as its `ChatLLM` (the reviser's `plain()` included). The server's errors come back as RapoError.
    """

    def __init__(self, server: ServerInfo, settings: Stage1Settings) -> None:
        self.server = server
        self.settings = settings
        self.lookup = RemoteLookup(server)
        self.llm = RemoteLLM(server)

    def load(self) -> None:
        """Nothing to load: the server has."""

    def run_many(self, prompts: list[str], seed: int = 0) -> list[Stage1Result]:
        """`run` for each prompt, one request at a time (the server runs one prompt at a time anyway)."""
        return [self.run(prompt, seed) for prompt in prompts]

    def run(self, prompt: str, seed: int = 0, pin: Sequence[str] = (), ban: Sequence[str] = ()) -> Stage1Result:
        """One prompt through the server's Stage 1, with the person's pinned and banned modifiers."""
        body = {"prompt": prompt, "seed": seed, "settings": self.settings.model_dump(mode="json"), "pin": list(pin),
                "ban": list(ban)}  # fmt: skip
        return Stage1Result.model_validate_json(_post(self.server, "/refine", body))

    def models(self) -> dict[str, object]:
        """The server's model ids, template versions and graph provenance under these settings."""
        return json.loads(_post(self.server, "/models", self.settings.model_dump(mode="json")))


class RemoteLookup:
    """The server's graph lookup: `retrieve` as `tools.retrieval.GraphLookup` has it."""

    def __init__(self, server: ServerInfo) -> None:
        self.server = server

    def retrieve(self, prompt: str, top_k: int = 3, threshold: float = 0.5) -> Retrieval:
        """The server's modifiers for `prompt`."""
        body = {"prompt": prompt, "top_k": top_k, "threshold": threshold}
        return Retrieval.model_validate_json(_post(self.server, "/lookup", body))


class RemoteLLM:
    """The server's LLM as a `ChatLLM`; `plain()` is the same model without its adapter, as on the server."""

    concurrency = 1  # the server answers one request at a time (one model); `refine_file` reads it

    def __init__(self, server: ServerInfo, plain: bool = False) -> None:
        self.server = server
        self.is_plain = plain

    @cached_property
    def _info(self) -> dict:
        with _opened(self.server, urllib.request.Request(f"{self.server.url}/health")) as response:
            return json.loads(response.read())["llm"]

    @property
    def dtype(self) -> str:
        """The dtype the server's LLM runs in."""
        return self._info["dtype"]

    @property
    def model_id(self) -> str:
        """The server's model name."""
        return self._info["model_id"]

    @property
    def adapter_id(self) -> str | None:
        """The server's adapter, or None for `plain()`."""
        return None if self.is_plain else self._info["adapter_id"]

    def load(self) -> None:
        """Nothing to load: the server has."""

    def plain(self) -> RemoteLLM:
        """The server's LLM without its adapter (itself when it has none)."""
        return self if self.is_plain or self.adapter_id is None else RemoteLLM(self.server, plain=True)

    def generate(self, messages: list[dict[str, str]], seed: int, decoding: Decoding) -> Generation:
        """Answer one chat on the server."""
        return self.generate_many([messages], [seed], decoding)[0]

    def generate_many(
        self,
        conversations: Sequence[list[dict[str, str]]],
        seeds: Sequence[int],
        decoding: Decoding | Sequence[Decoding],
    ) -> list[Generation]:
        """Answer many chats on the server, each as it would be alone there; answers in input order."""
        body = {"conversations": list(conversations), "seeds": list(seeds), "plain": self.is_plain,
                "decodings": [d.model_dump() for d in per_chat(conversations, seeds, decoding)]}  # fmt: skip
        return [Generation.model_validate(g) for g in json.loads(_post(self.server, "/generate", body))]


def _post(server: ServerInfo, path: str, body: dict) -> bytes:
    """POST JSON to the server and return its answer's bytes."""
    request = urllib.request.Request(
        f"{server.url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with _opened(server, request) as response:
        return response.read()


@contextmanager
def _opened(server: ServerInfo, request: urllib.request.Request) -> Iterator[http.client.HTTPResponse]:
    """The server's response; its errors as RapoError, with the message it gave."""
    try:
        with urllib.request.urlopen(request, timeout=3600) as response:
            yield response
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]
        except (ValueError, KeyError):
            message = f"HTTP {exc.code} from the rapo server at {server.url}"
        raise RapoError(message) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise RapoError(f"the rapo server at {server.url} stopped answering: {exc}; add --local") from None
