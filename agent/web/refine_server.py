"""`rapo serve`: Stage 1 with its models loaded once, on 127.0.0.1, for `rapo refine` and `rapo chat` to use.

    POST /refine    {"prompt", "seed", "settings": Stage1Settings, "pin", "ban"}  ->  the JSON of `rapo refine --json`
    POST /lookup    {"prompt", "top_k", "threshold"}  ->  the graph's Retrieval for the prompt
    POST /generate  {"conversations", "seeds", "decodings", "plain"}  ->  the LLM's answers (`ChatLLM.generate_many`)
    POST /models    Stage1Settings  ->  `Stage1.models()`: model ids, templates and graph provenance, for the record
    GET  /health    ->  the server's identity, its LLM, and how many requests of each kind it has answered

The graph store, the embedder, the LLM (with its adapter) and the discriminator are shared by every request; each
request builds a `Stage1` with its own settings (top-k, threshold, target), which costs nothing. Requests run one at
a time: there is one model and two cores. `plain` asks the LLM without its adapter (a chat's revisions), loaded on
the first such request.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import Counter
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from rapo.agent.runs.refine_client import ServerIdentity, ServerInfo, servers_dir
from rapo.common import RapoError, stderr
from rapo.tools.llm import Decoding, Generation
from rapo.tools.retrieval import Retrieval
from rapo.tools.stage1 import Stage1, Stage1Result, Stage1Settings


class RefineRequest(BaseModel):
    """Body of POST /refine."""

    prompt: str
    seed: int = 0
    settings: Stage1Settings
    pin: list[str] = Field(default_factory=list)
    ban: list[str] = Field(default_factory=list)


class LookupRequest(BaseModel):
    """Body of POST /lookup."""

    prompt: str
    top_k: int = 3
    threshold: float = 0.5


class GenerateRequest(BaseModel):
    """Body of POST /generate: one decoding per chat."""

    conversations: list[list[dict[str, str]]]
    seeds: list[int]
    decodings: list[Decoding]
    plain: bool = False


def create_refine_app(pipeline: Stage1, ident: ServerIdentity) -> FastAPI:
    """The app over one loaded Stage 1 pipeline."""
    app = FastAPI(title="rapo serve", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()
    served: Counter[str] = Counter()

    @app.exception_handler(RapoError)
    async def user_error(request, exc: RapoError) -> JSONResponse:  # noqa: ANN001 - Starlette's signature
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(ValueError)
    async def bad_value(request, exc: ValueError) -> JSONResponse:  # noqa: ANN001 - e.g. a pin that was not retrieved
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.post("/refine")
    def refine(body: RefineRequest) -> Stage1Result:
        stage1 = Stage1(pipeline.lookup, pipeline.llm, body.settings, pipeline.discriminator, pipeline.verifier)
        with lock:
            result = stage1.run(body.prompt, body.seed, body.pin, body.ban)
            served["refine"] += 1
        return result

    @app.post("/lookup")
    def lookup(body: LookupRequest) -> Retrieval:
        with lock:
            served["lookup"] += 1
            return pipeline.lookup.retrieve(body.prompt, body.top_k, body.threshold)

    @app.post("/generate")
    def generate(body: GenerateRequest) -> list[Generation]:
        llm = pipeline.llm.plain() if body.plain else pipeline.llm
        with lock:
            served["generate"] += 1
            return llm.generate_many(body.conversations, body.seeds, body.decodings)

    @app.post("/models")
    def models(settings: Stage1Settings) -> dict:
        return Stage1(pipeline.lookup, pipeline.llm, settings, pipeline.discriminator, pipeline.verifier).models()

    @app.get("/health")
    def health() -> dict:
        llm = {"model_id": pipeline.llm.model_id, "adapter_id": pipeline.llm.adapter_id, "dtype": pipeline.llm.dtype}
        return {"identity": ident.model_dump(), "llm": llm, "served": dict(served), "pid": os.getpid()}

    return app


def serve(pipeline: Stage1, ident: ServerIdentity, port: int = 0) -> None:
    """Load the models, announce the server in `$RAPO_HOME/servers`, and answer until stopped (Ctrl-C, SIGTERM)."""
    import uvicorn

    seconds = pipeline.load()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        raise RapoError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    sock.listen(64)  # before the announcement: a client that reads it is queued, never refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    announce = servers_dir() / f"{os.getpid()}.json"

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Here, not after run(): uvicorn re-raises the SIGTERM it caught once it has stopped, ending the process.
            announce.unlink(missing_ok=True)
            await super().shutdown(sockets)

    server = Server(uvicorn.Config(create_refine_app(pipeline, ident), log_level="warning"))
    announce.parent.mkdir(parents=True, exist_ok=True)
    partial = announce.with_suffix(".partial")
    partial.write_text(ServerInfo(url=url, pid=os.getpid(), identity=ident).model_dump_json(indent=2) + "\n")
    partial.replace(announce)
    stderr.print(f"rapo serve: models loaded in {seconds:.1f} s; serving Stage 1 on {url} until Ctrl-C", markup=False)
    try:
        server.run(sockets=[sock])
    finally:
        Path(announce).unlink(missing_ok=True)
