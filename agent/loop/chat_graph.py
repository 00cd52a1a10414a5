"""The chat variant of the SSPO graph: the same nodes, with a person deciding each step through `interrupt()`.

    START -> rewrite -> human -+-> accept ---------------> END
                ^              +-> edit -----------------> human
                |              +-> change -> revise ----> human
                +--------------+-> pin / ban (Stage 1 again)
                               +-> generate -> generate -> critique -> human

Undo is time travel over the checkpoints (`agent/chat/session.py`), not a node. Callers compile it with their own
checkpointer.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from rapo.agent.loop import nodes
from rapo.agent.loop.context import Context
from rapo.agent.loop.state import ChatState, Turn


def human(state: ChatState, runtime: Runtime[Context]) -> dict:
    """Wait for the person's turn and apply it. LangGraph re-runs this node on resume: nothing costly before it."""
    turn = Turn.model_validate(interrupt({"iteration": state.iteration, "candidates": state.candidates}))
    update: dict = {"turns": [turn], "stop_reason": None}
    if turn.action == "accept":
        update["accepted"] = state.candidates[turn.candidate]
    elif turn.action == "edit":
        update |= {"candidates": [turn.text], "iteration": state.iteration + 1}
    elif turn.action == "change":
        update["instructions"] = turn.text
    elif turn.action == "pin":
        update |= {"pinned": [*state.pinned, turn.text], "banned": [m for m in state.banned if m != turn.text]}
    elif turn.action == "ban":
        update |= {"banned": [*state.banned, turn.text], "pinned": [m for m in state.pinned if m != turn.text]}
    return update


def after_human(state: ChatState) -> Literal["rewrite", "revise", "generate", "human", "__end__"]:
    """Follow the person's last turn."""
    action = state.turns[-1].action if state.turns else None
    if action == "accept":
        return END
    if action == "edit":
        return "human"
    if action == "change":
        return "revise"
    if action in ("pin", "ban"):
        return "rewrite"
    if action == "generate":
        return "generate"
    raise ValueError(f"human left the last turn's action={action!r}")


builder = StateGraph(ChatState, context_schema=Context)
builder.add_node("rewrite", nodes.rewrite)
builder.add_node("human", human)
builder.add_node("revise", nodes.revise)
builder.add_node("generate", nodes.generate)
builder.add_node("critique", nodes.critique)
builder.add_edge(START, "rewrite")
builder.add_edge("rewrite", "human")
builder.add_conditional_edges("human", after_human)
builder.add_edge("revise", "human")
builder.add_edge("generate", "critique")
builder.add_edge("critique", "human")
