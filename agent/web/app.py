"""`rapo ui`: a FastAPI app over run dirs (read only) and a chat home (the session API of `agent/chat/session.py`).

Pages are rendered on the server (Jinja2; diffs and charts in `render.py`), the chat page is a small vanilla-JS
client of the same JSON API the tests call, and every asset is served from this package: no CDN, no build step.
Only files inside the given run dirs and the chat home are ever served.
"""

from __future__ import annotations

import hmac
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel

from rapo.agent.chat.session import ChatSession, ChatSettings, ChatStore, ChatView, chat_context
from rapo.agent.loop.context import Context
from rapo.agent.loop.state import Turn
from rapo.agent.runs.runs_view import detail_json, run_detail, run_summary
from rapo.agent.web.render import score_chart, word_diff
from rapo.common import RapoError

_HERE = Path(__file__).parent
_TEMPLATES = Environment(loader=PackageLoader("rapo.agent.web", "templates"), autoescape=select_autoescape())


class NewSession(BaseModel):
    """Body of POST /api/chat/sessions."""

    prompt: str


class Undo(BaseModel):
    """Body of POST /api/chat/sessions/{id}/undo."""

    step: int


def inside(root: Path, relative: str) -> Path:
    """`root / relative` if that is a file inside `root` (symlinks resolved), else a 404."""
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise HTTPException(404, "not found")
    return path


class ChatService:
    """Chat sessions for the web: one context per distinct settings (models load once).

    All chat work runs on one worker thread: the graph store and the models are opened there and SQLite
    connections must stay on the thread that made them; the LLM runs one call at a time anyway.
    """

    def __init__(self, home: Path, settings: ChatSettings) -> None:
        self.store = ChatStore(home)
        self.settings = settings
        self._contexts: dict[str, Context] = {}
        self._sessions: dict[str, ChatSession] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rapo-chat")

    def _context(self, settings: ChatSettings) -> Context:
        key = settings.model_dump_json()
        if key not in self._contexts:
            self._contexts[key] = chat_context(settings, self.store.home)
        return self._contexts[key]

    def _session(self, session_id: str) -> ChatSession:
        if session_id not in self._sessions:
            info = self.store.info(session_id)
            self._sessions[session_id] = self.store.open(session_id, self._context(info.settings))
        return self._sessions[session_id]

    def create(self, prompt: str) -> ChatView:
        """Start a session with the server's settings."""

        def start() -> ChatView:
            session = self.store.create(prompt, self.settings, self._context(self.settings))
            self._sessions[session.info.id] = session
            return session.view()

        return self._worker.submit(start).result()

    def view(self, session_id: str) -> ChatView:
        """A session's view."""
        return self._worker.submit(lambda: self._session(session_id).view()).result()

    def send(self, session_id: str, turn: Turn) -> ChatView:
        """Apply a turn to a session."""
        return self._worker.submit(lambda: self._session(session_id).send(turn)).result()

    def undo(self, session_id: str, step: int) -> ChatView:
        """Take a session back to a step."""
        return self._worker.submit(lambda: self._session(session_id).undo(step)).result()


def create_app(run_dirs: list[Path], chat: ChatService | None, token: str | None = None) -> FastAPI:
    """The web app over `run_dirs` (each a `rapo optimize` output) and, if given, a chat service.

    With a `token`, every request must carry it: `?token=` (which also sets a cookie), the cookie, or
    `Authorization: Bearer`.
    """
    app = FastAPI(title="rapo", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    if token:

        @app.middleware("http")
        async def require_token(request: Request, call_next):  # noqa: ANN001, ANN202 - Starlette's signature
            given = (
                request.query_params.get("token")
                or request.cookies.get("rapo_token")
                or request.headers.get("authorization", "").removeprefix("Bearer ")
            )
            if not hmac.compare_digest(given.encode(), token.encode()):
                return Response("a token is required: open the URL that `rapo ui` printed", status_code=401)
            response = await call_next(request)
            if request.query_params.get("token"):
                response.set_cookie("rapo_token", token, httponly=True, samesite="strict")
            return response

    @app.exception_handler(RapoError)
    async def user_error(request: Request, exc: RapoError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    def page(name: str, **values: object) -> HTMLResponse:
        return HTMLResponse(_TEMPLATES.get_template(name).render(chat=chat is not None, **values))

    def run_dir(index: int) -> Path:
        if not 0 <= index < len(run_dirs):
            raise HTTPException(404, "no such run")
        return run_dirs[index]

    @app.get("/", response_class=HTMLResponse)
    def runs_page() -> HTMLResponse:
        return page("runs.html", runs=[run_summary(i, d) for i, d in enumerate(run_dirs)])

    @app.get("/api/runs")
    def runs_api() -> list[dict]:
        return [run_summary(i, d) for i, d in enumerate(run_dirs)]

    @app.get("/runs/{index}", response_class=HTMLResponse)
    def run_page(index: int) -> HTMLResponse:
        return page("run.html", run=run_detail(index, run_dir(index)), word_diff=word_diff, score_chart=score_chart)

    @app.get("/api/runs/{index}")
    def run_api(index: int) -> dict:
        return detail_json(run_detail(index, run_dir(index)))

    @app.get("/runs/{index}/files/{path:path}")
    def run_file(index: int, path: str) -> FileResponse:
        return FileResponse(inside(run_dir(index), path))

    if chat is None:
        return app

    @app.get("/chat", response_class=HTMLResponse)
    def chat_page() -> HTMLResponse:
        return page("chat.html", generator=chat.settings.generator)

    @app.get("/chat/files/{path:path}")
    def chat_file(path: str) -> FileResponse:
        return FileResponse(inside(chat.store.home, path))

    @app.get("/api/chat/sessions")
    def sessions() -> list[dict]:
        return [s.model_dump(mode="json", exclude={"settings"}) for s in chat.store.list()]

    @app.post("/api/chat/sessions")
    def new_session(body: NewSession) -> ChatView:
        return chat.create(body.prompt)

    @app.get("/api/chat/sessions/{session_id}")
    def session_view(session_id: str) -> ChatView:
        return chat.view(session_id)

    @app.post("/api/chat/sessions/{session_id}/turn")
    def turn(session_id: str, body: Turn) -> ChatView:
        return chat.send(session_id, body)

    @app.post("/api/chat/sessions/{session_id}/undo")
    def undo(session_id: str, body: Undo) -> ChatView:
        return chat.undo(session_id, body.step)

    @app.get("/chat/", include_in_schema=False)
    def chat_slash() -> RedirectResponse:
        return RedirectResponse("/chat")

    return app
