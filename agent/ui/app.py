"""`rapo ui`: a FastAPI app over run dirs (read only) and a chat home (the session API of `agent/session.py`).

Pages are rendered on the server (Jinja2; diffs and charts in `render.py`), the chat page is a small vanilla-JS
client of the same JSON API the tests call, and every asset is served from this package: no CDN, no build step.
Only files inside the given run dirs and the chat home are ever served.
"""

from __future__ import annotations

import hmac
import threading
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel

from agent.runs_view import detail_json, run_detail, run_summary
from agent.session import ChatSession, ChatSettings, ChatStore, ChatView, chat_context
from agent.state import Turn
from agent.ui.render import score_chart, word_diff
from graph_db.errors import RapoError

_HERE = Path(__file__).parent
_TEMPLATES = Environment(loader=PackageLoader("agent.ui", "templates"), autoescape=select_autoescape())


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
    """Chat sessions for the web: one context per distinct settings (models load once), one lock per session."""

    def __init__(self, home: Path, settings: ChatSettings) -> None:
        self.store = ChatStore(home)
        self.settings = settings
        self._contexts: dict[str, object] = {}
        self._sessions: dict[str, ChatSession] = {}
        self._lock = threading.Lock()

    def _context(self, settings: ChatSettings):  # noqa: ANN202 - agent.context.Context
        key = settings.model_dump_json()
        with self._lock:
            if key not in self._contexts:
                self._contexts[key] = chat_context(settings, self.store.home)
            return self._contexts[key]

    def create(self, prompt: str) -> ChatView:
        """Start a session with the server's settings."""
        session = self.store.create(prompt, self.settings, self._context(self.settings))
        self._sessions[session.info.id] = session
        return session.view()

    def get(self, session_id: str) -> ChatSession:
        """An open session object, reopened from the store when needed."""
        if session_id not in self._sessions:
            info = self.store.info(session_id)
            self._sessions[session_id] = self.store.open(session_id, self._context(info.settings))
        return self._sessions[session_id]


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
        return chat.get(session_id).view()

    @app.post("/api/chat/sessions/{session_id}/turn")
    def turn(session_id: str, body: Turn) -> ChatView:
        return chat.get(session_id).send(body)

    @app.post("/api/chat/sessions/{session_id}/undo")
    def undo(session_id: str, body: Undo) -> ChatView:
        return chat.get(session_id).undo(body.step)

    @app.get("/chat/", include_in_schema=False)
    def chat_slash() -> RedirectResponse:
        return RedirectResponse("/chat")

    return app
