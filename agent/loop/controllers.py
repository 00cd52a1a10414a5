"""Who picks the next step once the budgets allow one: the SSPO policy, or a tool-calling chat model."""

from __future__ import annotations

import time

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from rapo.agent.loop.context import Context
from rapo.agent.loop.selection import select_best, unmet
from rapo.agent.loop.state import SSPOState, ToolCall


class PolicyController:
    """The deterministic SSPO policy: within budget and with a threshold unmet, revise."""

    name = "policy"

    def decide(self, state: SSPOState, ctx: Context) -> dict:
        """Revise, aiming the instructions at the metrics below their thresholds."""
        best = select_best(state.evaluated)
        below = unmet(best, ctx.config.thresholds) if best else {}
        hint = ", ".join(f"raise {m} (now {s:.2f})" for m, s in below.items())
        return {"next_action": "revise", "instructions": hint}


class ReviseArgs(BaseModel):
    """Arguments of the `revise` decision."""

    instructions: str = Field("", description="What the next candidates should change, in a sentence.")


class FinishArgs(BaseModel):
    """Arguments of the `finish` decision."""

    reason: str = Field(description="Why the loop should stop now.")


def decision_tools() -> list[StructuredTool]:
    """`revise` and `finish`: the two decisions a controller model can call."""
    return [
        StructuredTool.from_function(lambda instructions="": instructions, name="revise", args_schema=ReviseArgs,
                                     description="Generate another round of candidate prompts."),
        StructuredTool.from_function(lambda reason: reason, name="finish", args_schema=FinishArgs,
                                     description="Stop and keep the best candidate so far."),
    ]  # fmt: skip


_SYSTEM = (
    "You run a text-to-video prompt optimisation loop. After each round of videos and critic scores (0 to 1, "
    "higher is better) you call exactly one tool: `revise` for another round of candidate prompts (say what to "
    "change), `finish` to stop, or a lookup tool to gather evidence first."
)


class LLMController:
    """A chat model with tools bound picks the next step, within an allow-list and a lookup budget.

    Anything else (no tool call, a tool off the allow-list, too many lookups, a failed model call or lookup) is
    recorded and the SSPO policy decides instead, so a confused or unreachable model never stops a run.
    """

    name = "llm"

    def __init__(self, model: BaseChatModel, allowed: list[str], max_lookups: int = 2) -> None:
        self.model = model
        self.allowed = allowed
        self.max_lookups = max_lookups
        self.fallback = PolicyController()

    def decide(self, state: SSPOState, ctx: Context) -> dict:
        """Ask the model; run lookups it asks for and ask again; map `revise`/`finish` onto the graph."""
        decisions = decision_tools()
        lookups = [ctx.tools[name] for name in self.allowed if name in ctx.tools]
        tools = {t.name: t for t in [*decisions, *lookups] if t.name in self.allowed or t in decisions}
        # strict: servers such as vLLM then return the arguments as an object, not as a JSON string.
        model = self.model.bind_tools(list(tools.values()), tool_choice="any", strict=True)
        messages = [SystemMessage(_SYSTEM), HumanMessage(_describe(state, ctx))]
        calls: list[ToolCall] = []
        for _ in range(self.max_lookups + 1):
            started = time.perf_counter()
            try:
                reply = model.invoke(messages)
            except Exception as exc:  # noqa: BLE001 - any failure of the model is the policy's turn
                return self._fallback(state, ctx, calls, f"the model call failed: {type(exc).__name__}: {exc}"[:300])
            if not reply.tool_calls:
                return self._fallback(state, ctx, calls, "the model called no tool")
            request = reply.tool_calls[0]
            name, args = request["name"], request["args"]
            if name not in tools:
                return self._fallback(state, ctx, calls, f"the model called {name!r}, which is not allowed")
            if name == "finish":
                calls.append(
                    ToolCall(tool="finish", args=args, summary=args.get("reason", ""), seconds=_since(started))
                )
                return {
                    "next_action": "finish",
                    "stop_reason": f"controller: {args.get('reason', '')}",
                    "tool_calls": calls,
                }
            if name == "revise":
                calls.append(ToolCall(tool="revise", args=args, summary="another round", seconds=_since(started)))
                return {"next_action": "revise", "instructions": args.get("instructions", ""), "tool_calls": calls}
            try:
                result = tools[name].invoke(args)
            except Exception as exc:  # noqa: BLE001 - a lookup that fails is the policy's turn
                return self._fallback(state, ctx, calls, f"{name} failed: {type(exc).__name__}: {exc}"[:300])
            calls.append(ToolCall(tool=name, args=args, summary=str(result)[:300], seconds=_since(started)))
            messages += [reply, ToolMessage(str(result)[:4000], tool_call_id=request["id"])]
        return self._fallback(state, ctx, calls, f"more than {self.max_lookups} lookups")

    def _fallback(self, state: SSPOState, ctx: Context, calls: list[ToolCall], why: str) -> dict:
        update = self.fallback.decide(state, ctx)
        calls.append(ToolCall(tool="controller", args={}, summary=f"{why}; the policy decided", seconds=0.0, ok=False))
        return {**update, "tool_calls": calls}


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 4)


def _describe(state: SSPOState, ctx: Context) -> str:
    lines = [f"Original prompt: {state.input}", f"Round {state.iteration} of at most {ctx.config.max_iters}."]
    for e in state.evaluated[-6:]:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in sorted(e.scores.items())) or e.error or "no scores"
        lines.append(f'- round {e.iteration}: "{e.prompt}" | {scores}')
    if ctx.config.thresholds:
        lines.append("Thresholds: " + ", ".join(f"{k} >= {v}" for k, v in ctx.config.thresholds.items()))
    return "\n".join(lines)
