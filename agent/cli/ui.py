"""`rapo ui`: serve the web UI over run dirs and a chat home."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from rapo.agent.cli.chat import ChatHomeOpt, chat_home
from rapo.agent.cli.options import AdapterOpt, GraphOpt, LlmOpt
from rapo.common import RapoError, stderr
from rapo.tools.critics.registry import CRITIC_NAMES


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: the only hosts served without a token."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ui_cmd(
    runs: Annotated[list[Path], typer.Option("--runs", help="Run dirs written by `rapo optimize`; repeatable.")] = [],  # noqa: B006
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback requires a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 7860,
    token: Annotated[
        str | None, typer.Option(help="Token for non-loopback hosts (default: $RAPO_UI_TOKEN, else a generated one).")
    ] = None,
    chat: Annotated[bool, typer.Option(help="Serve the chat page (loads the LLM on the first session).")] = True,
    home: ChatHomeOpt = None,
    generator: Annotated[str | None, typer.Option(help="Video generator for chat sessions (default: none).")] = None,
    critics: Annotated[str, typer.Option(help=f"Chat critics, of: {', '.join(CRITIC_NAMES)}.")] = "flow,temporal",
    graph: GraphOpt = None,
    llm: LlmOpt = None,
    adapter: AdapterOpt = None,
) -> None:
    """Serve the web UI: runs, each run's iterations (diffs, scores, videos, tool calls), and chat sessions.

    Examples:
      rapo ui --runs runs/tonight --runs runs/wan
      rapo ui --runs runs/tonight --generator tiny-wan --port 8080
      rapo ui --runs runs/tonight --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    """
    import uvicorn

    from rapo.agent.chat.session import ChatSettings
    from rapo.agent.runs.trajectory import open_run_dir
    from rapo.agent.web.app import ChatService, create_app

    for run_dir in runs:  # each readable now, not at the first page view
        open_run_dir(run_dir)[0].close()
    token = token or os.environ.get("RAPO_UI_TOKEN") or None
    if not is_loopback(host):
        token = token or secrets.token_urlsafe(18)
    names = [c.strip() for c in critics.split(",") if c.strip()]
    if unknown := [c for c in names if c not in CRITIC_NAMES]:
        raise RapoError(f"--critics: unknown critic(s) {', '.join(unknown)}; choose from {', '.join(CRITIC_NAMES)}")
    service = None
    if chat:
        settings = ChatSettings(graph=graph, llm=llm, adapter=str(adapter) if adapter else None, generator=generator,
                                critics=names if generator else [])  # fmt: skip
        service = ChatService(chat_home(home), settings)
    app = create_app([r.resolve() for r in runs], service, token)
    url = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
    stderr.print(f"rapo ui on {url}", markup=False, highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")
