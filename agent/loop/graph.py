"""The SSPO state machine, assembled in build order. Callers compile it with their own checkpointer."""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph

from rapo.agent.loop import nodes
from rapo.agent.loop.context import Context
from rapo.agent.loop.state import SSPOState


def after_decide(state: SSPOState) -> Literal["revise", "finalize"]:
    """Follow the controller's decision."""
    if state.next_action == "revise":
        return "revise"
    if state.next_action == "finish":
        return "finalize"
    raise ValueError(f"decide left next_action={state.next_action!r}")


def after_revise(state: SSPOState) -> Literal["generate", "finalize"]:
    """Render the new candidates, or stop when the reviser found none."""
    return "finalize" if state.stop_reason else "generate"


builder = StateGraph(SSPOState, context_schema=Context)
builder.add_node("rewrite", nodes.rewrite)
builder.add_node("generate", nodes.generate)
builder.add_node("critique", nodes.critique)
builder.add_node("decide", nodes.decide)
builder.add_node("revise", nodes.revise)
builder.add_node("finalize", nodes.finalize)
builder.add_edge(START, "rewrite")
builder.add_edge("rewrite", "generate")
builder.add_edge("generate", "critique")
builder.add_edge("critique", "decide")
builder.add_conditional_edges("decide", after_decide)
builder.add_conditional_edges("revise", after_revise)
builder.add_edge("finalize", END)
