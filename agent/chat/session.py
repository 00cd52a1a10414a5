"""Chat sessions: the API that the terminal chat, the web chat page and the tests all drive.

A chat home holds `sessions.sqlite` (one row per session: its prompt, status and settings), LangGraph's
`checkpoints.sqlite` (one thread per session, every step of it) and `videos/`. A turn resumes the chat graph
with `Command(resume=turn)`; undo copies an earlier step's checkpoint to the head of the thread (LangGraph's
`__copy__` fork), so the next turn continues from there and a resumed session starts where it stopped.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Literal

from langgraph.types import Command, StateSnapshot
from pydantic import BaseModel, Field

from rapo.agent.loop.chat_graph import builder
from rapo.agent.loop.context import Context, SSPOConfig
from rapo.agent.loop.state import ChatState, Turn
from rapo.agent.runs.optimize import checkpointer
from rapo.agent.settings import Settings
from rapo.common import PromptError, RapoError
from rapo.tools.stage1 import Stage1Settings, check_prompt

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created_at REAL NOT NULL, updated_at REAL NOT NULL, input TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'accepted')), accepted TEXT, settings TEXT NOT NULL
);
"""
_ID = re.compile(r"[0-9a-f]{8}")


class ChatSettings(BaseModel):
    """What a session was started with; a resumed session uses the same."""

    graph: str | None = Field(None, description="Relation graph file or Neo4j URL; None: $RAPO_GRAPH or the default.")
    llm: str | None = Field(None, description="Local causal LM folder; None: $RAPO_LLM or SmolLM2-135M-Instruct.")
    adapter: str | None = Field(None, description="PEFT LoRA adapter folder on top of the LLM.")
    generator: str | None = Field(None, description="A tiny-* spec or a pipeline folder; None: no videos.")
    critics: list[str] = Field(default_factory=list, description="Critics that score the videos.")
    config: SSPOConfig = Field(default_factory=SSPOConfig)


class SessionInfo(BaseModel):
    """A session's row in `sessions.sqlite`."""

    id: str
    created_at: float
    updated_at: float
    input: str
    status: Literal["open", "accepted"]
    accepted: str | None = None
    settings: ChatSettings


class ModifierView(BaseModel):
    """A retrieved modifier as the person sees it."""

    kind: str
    text: str
    score: float = Field(description="Cosine similarity to the prompt.")
    merged: bool
    pinned: bool
    banned: bool


class CandidateView(BaseModel):
    """A current candidate with its video and scores, once generated."""

    index: int
    text: str
    video: str | None = Field(None, description="The mp4, relative to the chat home.")
    scores: dict[str, float] = Field(default_factory=dict)
    feedback: dict[str, str] = Field(default_factory=dict)
    error: str | None = None


class StepView(BaseModel):
    """A step the person can undo to: a point where the session waited for them."""

    step: int
    iteration: int
    after: str = Field(description="The turn that led here, or 'start'.")
    candidates: list[str]


class ChatView(BaseModel):
    """Everything the person sees between turns."""

    session: str
    input: str
    status: Literal["open", "accepted"]
    iteration: int
    candidates: list[CandidateView]
    modifiers: list[ModifierView]
    note: str | None = Field(None, description="Why the last turn changed nothing, if it did not.")
    accepted: str | None = None
    turns: list[Turn]
    steps: list[StepView]
    can_generate: bool


class ChatStore:
    """The sessions of one chat home; safe to share between threads (the web UI)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(home / "sessions.sqlite", check_same_thread=False)
            with self._conn:
                self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RapoError(f"not a readable chat store: {home / 'sessions.sqlite'} ({exc})") from None
        self.graph = builder.compile(checkpointer=checkpointer(home))
        self._lock = threading.Lock()

    def create(self, prompt: str, settings: ChatSettings, ctx: Context) -> ChatSession:
        """Start a session: Stage 1 runs, then the session waits for the person's first turn."""
        prompt = check_prompt(prompt)
        now = time.time()
        info = SessionInfo(id=uuid.uuid4().hex[:8], created_at=now, updated_at=now, input=prompt, status="open",
                           settings=settings)  # fmt: skip
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (info.id, now, now, prompt, "open", None, settings.model_dump_json()),
            )
        session = ChatSession(self, info, ctx)
        session._run(ChatState(input=prompt))
        return session

    def info(self, session_id: str) -> SessionInfo:
        """A session's row; raises RapoError for an unknown id."""
        row = None
        if _ID.fullmatch(session_id):
            with self._lock:
                row = self._conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise RapoError(f"no chat session {session_id!r} in {self.home} (`rapo chat --list` lists them)")
        return _info(row)

    def open(self, session_id: str, ctx: Context) -> ChatSession:
        """Reopen a session where it stopped."""
        return ChatSession(self, self.info(session_id), ctx)

    def list(self) -> list[SessionInfo]:
        """Every session, most recently used first."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM sessions ORDER BY updated_at DESC").fetchall()
        return [_info(r) for r in rows]

    def _save(self, info: SessionInfo) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "UPDATE sessions SET updated_at = ?, status = ?, accepted = ? WHERE id = ?",
                (info.updated_at, info.status, info.accepted, info.id),
            )


def _info(row: tuple) -> SessionInfo:
    return SessionInfo(id=row[0], created_at=row[1], updated_at=row[2], input=row[3], status=row[4], accepted=row[5],
                       settings=ChatSettings.model_validate_json(row[6]))  # fmt: skip


class ChatSession:
    """One session: its view, the person's turns, and undo."""

    def __init__(self, store: ChatStore, info: SessionInfo, ctx: Context) -> None:
        self.store = store
        self.info = info
        self.ctx = ctx
        self.config = {"configurable": {"thread_id": info.id}, "recursion_limit": 50}
        self._lock = threading.Lock()

    def view(self) -> ChatView:
        """What the person sees now."""
        snapshot = self.store.graph.get_state(self.config)
        state = ChatState.model_validate(snapshot.values)
        scored = {e.index: e for e in state.evaluated if e.iteration == state.iteration}
        candidates = []
        for index, text in enumerate(state.candidates):
            e = scored.get(index) if scored.get(index) and scored[index].prompt == text else None
            candidates.append(
                CandidateView(index=index, text=text, video=e.video, scores=e.scores, feedback=e.feedback,
                              error=e.error) if e else CandidateView(index=index, text=text)
            )  # fmt: skip
        modifiers = [
            ModifierView(kind=str(m.kind), text=m.text, score=m.score, merged=m.text in state.merged,
                         pinned=m.text in state.pinned, banned=m.text in state.banned)
            for m in state.modifiers
        ]  # fmt: skip
        return ChatView(
            session=self.info.id, input=state.input, status="accepted" if not snapshot.next else "open",
            iteration=state.iteration, candidates=candidates, modifiers=modifiers, note=state.stop_reason,
            accepted=state.accepted if not snapshot.next else None, turns=state.turns, steps=self.steps(),
            can_generate="generate_video" in self.ctx.tools and not scored
            and state.videos_made < self.ctx.config.max_videos,
        )  # fmt: skip

    def send(self, turn: Turn) -> ChatView:
        """Apply the person's turn; raises RapoError (nothing changes) for a turn that does not fit the view."""
        with self._lock:
            self._check(turn, self.view())
            self._run(Command(resume=turn.model_dump()))
            return self.view()

    def steps(self) -> list[StepView]:
        """The steps of the current branch where the session waited for the person, oldest first."""
        return [
            StepView(step=i, iteration=s.iteration, after=_describe(s.turns[-1]) if s.turns else "start",
                     candidates=s.candidates)
            for i, (_, s) in enumerate(self._waiting())
        ]  # fmt: skip

    def undo(self, step: int) -> ChatView:
        """Go back to an earlier step (time travel): the turns after it leave this branch; the history keeps them."""
        with self._lock:
            waiting = self._waiting()
            if not 0 <= step < len(waiting):
                raise RapoError(f"no step {step}: this session has steps 0 to {len(waiting) - 1}")
            self.store.graph.update_state(waiting[step][0].config, None, as_node="__copy__")
            self._touch()
            return self.view()

    def _waiting(self) -> list[tuple[StateSnapshot, ChatState]]:
        """(snapshot, state) for every checkpoint of the current branch that waits at `human`, oldest first."""
        history = {
            s.config["configurable"]["checkpoint_id"]: s for s in self.store.graph.get_state_history(self.config)
        }
        snapshot = self.store.graph.get_state(self.config)
        chain = []
        while snapshot is not None:
            if snapshot.next == ("human",):
                chain.append((snapshot, ChatState.model_validate(snapshot.values)))
            parent = snapshot.parent_config
            snapshot = history.get(parent["configurable"]["checkpoint_id"]) if parent else None
        return chain[::-1]

    def _run(self, command: ChatState | Command) -> None:
        self.store.graph.invoke(command, self.config, context=self.ctx, durability="sync")  # see agent/runs/optimize.py
        self._touch()

    def _touch(self) -> None:
        snapshot = self.store.graph.get_state(self.config)
        done = not snapshot.next
        self.info = self.info.model_copy(
            update={"updated_at": time.time(), "status": "accepted" if done else "open",
                    "accepted": snapshot.values.get("accepted") if done else None}
        )  # fmt: skip
        self.store._save(self.info)

    def _check(self, turn: Turn, view: ChatView) -> None:
        if view.status == "accepted":
            raise RapoError(f"session {view.session} is finished: undo to a step to go on")
        if turn.action in ("accept", "edit") and turn.candidate >= len(view.candidates):
            raise RapoError(f"no candidate {turn.candidate}: there are {len(view.candidates)}")
        if turn.action == "edit":
            check_prompt(turn.text)
        if turn.action == "change" and not turn.text.strip():
            raise PromptError("say what to change, e.g. 'more cinematic' or 'keep the red car'")
        if turn.action in ("pin", "ban"):
            known = {m.text: m for m in view.modifiers}
            if turn.text not in known:
                raise RapoError(f"{turn.text!r} is not a retrieved modifier; choose one of the list")
            if getattr(known[turn.text], f"{turn.action}ned"):
                raise RapoError(f"{turn.text!r} is {turn.action}ned already")
        if turn.action == "generate":
            if "generate_video" not in self.ctx.tools:
                raise RapoError("no video generator: start the session with --generator to make videos")
            if not view.can_generate:
                raise RapoError(
                    "these candidates have their videos (or the video budget is spent): edit, change or pin"
                )


def _describe(turn: Turn) -> str:
    if turn.action in ("accept", "generate"):
        return turn.action
    return f"{turn.action}: {turn.text}"


def chat_context(settings: ChatSettings, home: Path, served: bool = False) -> Context:
    """The run-time context of a session's graph, from its settings; models load on first use.

    With `served`, a running `rapo serve` that loaded the same graph and LLM does Stage 1, the graph lookups and the
    revisions (`agent/runs/refine_client.py`), so no model loads here. The person decides each step, so the spec's
    controller is never asked.
    """
    from rapo.agent.runs.refine import check_target, open_graph, served_stage1
    from rapo.agent.runs.run_spec import RunSpec, build_context

    env = Settings()
    spec = RunSpec(
        generator=settings.generator, critics=settings.critics, config=settings.config, graph=settings.graph,
        llm=settings.llm or env.llm, llm_dtype=env.llm_dtype, adapter=settings.adapter,
        stage1=Stage1Settings(target=check_target(env.target)), run_dir=home,
    )  # fmt: skip
    stage1 = None
    if served:
        location = open_graph(spec.graph, env)[0]
        stage1 = served_stage1(location, spec.llm, spec.adapter, spec.discriminator, spec.llm_dtype, spec.stage1)
    return build_context(spec, stage1=stage1)
