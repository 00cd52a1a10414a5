"""`rapo chat`: refine a prompt in conversation, in the terminal, over the session API of `agent/chat/session.py`."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from rapo.agent.cli.options import AdapterOpt, GraphOpt, LlmOpt, LocalOpt, SeedOpt
from rapo.common import RapoError, rapo_home, stderr, stdout
from rapo.tools.critics.registry import CRITIC_NAMES
from rapo.tools.tiny_pipelines import TINY_SPECS

if TYPE_CHECKING:
    from rapo.agent.chat.session import ChatSession, ChatStore, ChatView
    from rapo.agent.loop.state import Turn

ChatHomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Where sessions are kept (default: $RAPO_HOME/chat).", show_default=False)
]

HELP = """\
  a [N]          accept candidate N (default 0)        e [N] TEXT   edit candidate N by hand
  c TEXT         ask for a change in words             g            generate and score the candidates' videos
  p M / b M      pin / ban modifier M (number or text) u [STEP]     undo to STEP (default: one step back)
  h              the steps you can undo to             q            quit (the session is kept; resume with --session)"""


def chat_home(home: Path | None) -> Path:
    """The chat home: the option, else $RAPO_HOME/chat."""
    return home or rapo_home() / "chat"


def chat_cmd(
    prompt: Annotated[str | None, typer.Argument(help="The prompt to refine (starts a new session).")] = None,
    session: Annotated[str | None, typer.Option("--session", "-s", help="Resume the session with this id.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the sessions and exit.")] = False,
    home: ChatHomeOpt = None,
    generator: Annotated[
        str | None, typer.Option(help=f"{', '.join(TINY_SPECS)} or a pipeline folder, to make videos (default: none).")
    ] = None,
    critics: Annotated[str, typer.Option(help=f"Comma-separated, of: {', '.join(CRITIC_NAMES)}.")] = "flow,temporal",
    candidates: Annotated[int, typer.Option(help="Candidates per step.", min=1, max=8)] = 2,
    graph: GraphOpt = None,
    llm: LlmOpt = None,
    adapter: AdapterOpt = None,
    seed: SeedOpt = None,
    local: LocalOpt = False,
) -> None:
    """Refine a prompt in conversation: accept, edit, ask for changes, pin or ban modifiers, generate, undo.

    Examples:
      rapo chat "a red car at night"
      rapo chat "a red car at night" --generator tiny-wan --critics flow,temporal,imaging
      rapo chat --list
      rapo chat --session 7c2c328c

    While a `rapo serve` with the same graph and LLM runs, it does Stage 1, the lookups and the revisions: the
    chat starts without loading a model. --local loads them here anyway.
    """
    from rapo.agent.chat.session import ChatSettings, ChatStore, chat_context
    from rapo.agent.loop.context import SSPOConfig
    from rapo.agent.settings import Settings

    store = ChatStore(chat_home(home))
    if list_:
        _print_sessions(store)
        return
    if (prompt is None) == (session is None):
        raise RapoError("give either a PROMPT (a new session) or --session ID (resume one)")
    if session:
        info = store.info(session)
        chat = store.open(session, chat_context(info.settings, store.home, served=not local))
    else:
        names = [c.strip() for c in critics.split(",") if c.strip()]
        if unknown := [c for c in names if c not in CRITIC_NAMES]:
            raise RapoError(f"--critics: unknown critic(s) {', '.join(unknown)}; choose from {', '.join(CRITIC_NAMES)}")
        settings = ChatSettings(
            graph=graph, llm=llm, adapter=str(adapter) if adapter else None, generator=generator,
            critics=names if generator else [],
            config=SSPOConfig(candidates=candidates, seed=Settings().seed if seed is None else seed),
        )  # fmt: skip
        stderr.print("running Stage 1 ...", markup=False)
        chat = store.create(prompt, settings, chat_context(settings, store.home, served=not local))
    converse(chat)


def converse(chat: ChatSession) -> None:
    """The read-act-show loop; ends on accept, `q` or end of input. Every step is already persisted."""
    view = chat.view()
    show(view)
    while view.status == "open":
        try:
            line = input("> ").strip()
        except EOFError:
            line = "q"
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        try:
            if command in ("q", "quit"):
                break
            if command in ("h", "history"):
                _print_steps(view)
                continue
            if command in ("u", "undo"):
                view = chat.undo(int(rest) if rest else max(0, len(view.steps) - 2))
            elif command in ("", "?", "help"):
                stdout.print(HELP, markup=False, highlight=False)
                continue
            else:
                turn = _turn(command, rest, view)
                if turn.action in ("change", "pin", "ban", "generate"):
                    stderr.print("working ...", markup=False)
                view = chat.send(turn)
        except (RapoError, ValueError) as exc:
            stderr.print(f"error: {exc}", markup=False, highlight=False)
            continue
        show(view)
    stderr.print(f"session {view.session} kept: rapo chat --session {view.session}", markup=False)


def _turn(command: str, rest: str, view: ChatView) -> Turn:
    from rapo.agent.loop.state import Turn

    if command in ("a", "accept"):
        return Turn(action="accept", candidate=int(rest or 0))
    if command in ("e", "edit"):
        first, _, text = rest.partition(" ")
        return (
            Turn(action="edit", candidate=int(first), text=text) if first.isdigit() else Turn(action="edit", text=rest)
        )
    if command in ("c", "change"):
        return Turn(action="change", text=rest)
    if command in ("p", "pin", "b", "ban"):
        text = view.modifiers[int(rest)].text if rest.isdigit() and int(rest) < len(view.modifiers) else rest
        return Turn(action="pin" if command.startswith("p") else "ban", text=text)
    if command in ("g", "generate"):
        return Turn(action="generate")
    raise RapoError(f"unknown command {command!r}; type ? for help")


def show(view: ChatView) -> None:
    """Render the view: modifiers with scores, candidates with videos and scores, the note, or the accepted prompt."""
    step = len(view.steps) - 1
    stdout.print(f"\nsession {view.session} · step {step} · round {view.iteration} · {view.input}", markup=False)
    if view.status == "accepted":
        stdout.print(f"accepted: {view.accepted}", markup=False, highlight=False)
        return
    modifiers = Table(title="retrieved modifiers", title_justify="left")
    for column in ("#", "kind", "modifier", "similarity", ""):
        modifiers.add_column(column)
    for i, m in enumerate(view.modifiers):
        flags = " ".join(f for f, on in (("merged", m.merged), ("pinned", m.pinned), ("banned", m.banned)) if on)
        modifiers.add_row(str(i), m.kind, m.text, f"{m.score:.2f}", flags)
    stdout.print(modifiers)
    metrics = sorted({k for c in view.candidates for k in c.scores})
    table = Table(title="candidates", title_justify="left")
    for column in ("#", "prompt", *metrics, "video"):
        table.add_column(column)
    for c in view.candidates:
        table.add_row(str(c.index), c.text, *(f"{c.scores.get(m, 0):.2f}" for m in metrics), c.video or c.error or "")
    stdout.print(table)
    if view.note:
        stdout.print(f"note: {view.note}", markup=False, highlight=False)
    stdout.print("a accept · e edit · c change · p pin · b ban" + (" · g generate" if view.can_generate else "")
                      + " · u undo · h steps · q quit", markup=False)  # fmt: skip


def _print_steps(view: ChatView) -> None:
    for step in view.steps:
        stdout.print(f"{step.step}: round {step.iteration}, after {step.after}", markup=False, highlight=False)


def _print_sessions(store: ChatStore) -> None:
    table = Table()
    for column in ("session", "updated", "status", "prompt", "accepted"):
        table.add_column(column)
    for info in store.list():
        updated = datetime.datetime.fromtimestamp(info.updated_at).strftime("%Y-%m-%d %H:%M")
        table.add_row(info.id, updated, info.status, info.input, info.accepted or "")
    stdout.print(table)
