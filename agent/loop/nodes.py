"""The SSPO graph's nodes. Each takes the state and the run-time context and returns a partial update."""

from __future__ import annotations

import json
import time
import zlib
from typing import TypeVar

from langgraph.runtime import Runtime
from pydantic import BaseModel

from rapo.agent.loop.context import Context
from rapo.agent.loop.selection import rank_order, select_best, unmet
from rapo.agent.loop.state import Evaluation, RoundVideo, SSPOState, ToolCall
from rapo.tools.critics.base import CriticResult
from rapo.tools.generator import GeneratedVideo
from rapo.tools.lc_tools import Comparison
from rapo.tools.revise import Attempt
from rapo.tools.stage1 import Stage1Result

T = TypeVar("T", bound=BaseModel)


def call_tool(ctx: Context, name: str, args: dict, result_type: type[T]) -> tuple[T | None, ToolCall]:
    """Invoke a tool and read its JSON result as `result_type`; a failure is an observation, not a crash.

    Tools answer in JSON (what a tool-calling model reads); the nodes work on the typed result.
    """
    started = time.perf_counter()
    try:
        raw = ctx.tools[name].invoke(args)
    except Exception as exc:  # noqa: BLE001 - a failing tool is recorded and the loop decides what to do
        message = str(exc).splitlines()[0] if str(exc) else ""
        return None, ToolCall(
            tool=name, args=args, summary=f"{type(exc).__name__}: {message}", seconds=_since(started), ok=False
        )
    result = result_type.model_validate(raw)  # a tool that breaks its own schema is a programming error
    return result, ToolCall(tool=name, args=args, summary=_summary(result), seconds=_since(started))


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 4)


def _summary(result: BaseModel) -> str:
    if isinstance(result, Stage1Result):
        return f"{result.branch}: {result.prompt}"
    if isinstance(result, GeneratedVideo):
        return f"{result.path.name}{' (cached)' if result.cached else ''}"
    if isinstance(result, CriticResult):
        return f"{result.score:.3f}: {result.feedback}"[:300]
    return json.dumps(result.model_dump(mode="json"))[:300]


def rewrite(state: SSPOState, runtime: Runtime[Context]) -> dict:
    """Stage 1: the first round's candidates are Stage 1's choice, then its other candidate.

    A second pass (in chat, after a pin or a ban) starts a new round, so earlier rounds keep their numbers.
    """
    ctx = runtime.context
    args: dict = {"prompt": state.input, "seed": ctx.config.seed}
    args |= {"pin": state.pinned} if state.pinned else {}
    args |= {"ban": state.banned} if state.banned else {}
    result, call = call_tool(ctx, "refine_prompt", args, Stage1Result)
    texts = [result.prompt, *(c.text for c in result.candidates)] if result else [state.input]
    return {
        "candidates": list(dict.fromkeys(texts))[: ctx.config.candidates],
        "modifiers": result.modifiers if result else [],
        "merged": result.merged if result else [],
        "iteration": state.iteration + 1 if state.candidates else 0,
        "started_at": state.started_at or time.time(),
        "tool_calls": [call],
    }


def generate(state: SSPOState, runtime: Runtime[Context]) -> dict:
    """Render the round's candidates, within the video budget; the cache makes a re-run free."""
    ctx = runtime.context
    room = max(0, ctx.config.max_videos - state.videos_made)
    seeds = ctx.config.video_seeds
    videos, calls = [], []
    for index, prompt in enumerate(state.candidates[: room // len(seeds)]):  # a candidate gets all its seeds or none
        for seed in seeds:
            result, call = call_tool(ctx, "generate_video", {"prompt": prompt, "seed": seed}, GeneratedVideo)
            calls.append(call)
            error = None if result else call.summary
            videos.append(RoundVideo(index=index, prompt=prompt, seed=seed, video=result, error=error))
    return {"videos": videos, "videos_made": state.videos_made + len(videos), "tool_calls": calls}


def critique(state: SSPOState, runtime: Runtime[Context]) -> dict:
    """Score every video of the round with every critic, against the user's prompt.

    The paper's M(rho_u, v), as VBench and T2V-CompBench judge: a candidate that invents details is not rewarded
    for showing them. The candidate's own text stays in its `Evaluation`; the tool call records what was judged.
    With several noise seeds a candidate's score per critic is the mean over its seeds, its feedback the worst
    seed's, and `seed_scores` keeps each seed's scores for selection.
    """
    ctx = runtime.context
    evaluations, calls = [], []
    by_candidate: dict[int, list[RoundVideo]] = {}
    for item in state.videos:
        by_candidate.setdefault(item.index, []).append(item)
    for index, items in by_candidate.items():
        rendered = [item for item in items if item.video]
        evaluation = Evaluation(
            iteration=state.iteration, index=index, prompt=items[0].prompt,
            error=None if rendered else items[0].error,
        )  # fmt: skip
        verdicts: dict[str, list[tuple[int, CriticResult]]] = {}
        for item in rendered:
            for name in ctx.critics:
                args = {"video": str(item.video.path), "prompt": state.input} | (
                    {"meta": state.meta} if state.meta else {}
                )
                result, call = call_tool(ctx, f"critic_{name}", args, CriticResult)
                calls.append(call)
                if result:
                    verdicts.setdefault(name, []).append((item.seed, result))
        if rendered:
            evaluation.video = str(rendered[0].video.path.relative_to(ctx.run_dir))
            evaluation.video_key = rendered[0].video.key
        for name, results in verdicts.items():
            evaluation.scores[name] = sum(r.score for _, r in results) / len(results)
            seed, worst = min(results, key=lambda sr: sr[1].score)  # the seed that went worst says most
            evaluation.feedback[name] = worst.feedback if len(items) == 1 else f"(seed {seed}) {worst.feedback}"
            if len(items) > 1:
                for seed, result in results:
                    evaluation.seed_scores.setdefault(str(seed), {})[name] = result.score
        evaluations.append(evaluation)
    return {"evaluated": evaluations, "tool_calls": calls}


def decide(state: SSPOState, runtime: Runtime[Context]) -> dict:
    """Stop when the thresholds are met or a budget is spent; otherwise the controller picks the next step."""
    ctx = runtime.context
    config = ctx.config
    best = select_best(state.evaluated)
    if best and config.thresholds and not unmet(best, config.thresholds):
        return {"next_action": "finish", "stop_reason": "every threshold met"}
    if best is None and not any(e.video for e in state.evaluated):
        return {"next_action": "finish", "stop_reason": "no video could be generated"}
    if state.iteration >= config.max_iters:
        return {"next_action": "finish", "stop_reason": f"{config.max_iters} revision rounds done"}
    if state.videos_made >= config.max_videos:
        return {"next_action": "finish", "stop_reason": f"video budget of {config.max_videos} spent"}
    if config.max_seconds and time.time() - state.started_at >= config.max_seconds:
        return {"next_action": "finish", "stop_reason": f"time budget of {config.max_seconds:g} s spent"}
    return ctx.controller.decide(state, ctx)


def revise(state: SSPOState, runtime: Runtime[Context]) -> dict:
    """Ask the LLM for the next round's candidates from the history of attempts and feedback."""
    ctx = runtime.context
    history = [
        Attempt(prompt=e.prompt, scores=e.scores, feedback=" ".join(e.feedback.values()) or (e.error or ""))
        for e in state.evaluated
    ]
    # Candidates not rendered (over the video budget, or in chat before any video) are attempts too.
    rendered = {e.prompt for e in state.evaluated if e.iteration == state.iteration}
    history += [Attempt(prompt=p) for p in state.candidates if p not in rendered]
    seed = zlib.crc32(f"{ctx.config.seed}:{state.iteration}".encode())  # a new, reproducible seed per round
    started = time.perf_counter()
    found, rejected = ctx.reviser.revise(
        state.input, history, ctx.config.candidates, seed, state.instructions, state.meta
    )
    call = ToolCall(
        tool="revise_prompt",
        args={"iteration": state.iteration + 1, "k": ctx.config.candidates, "instructions": state.instructions},
        summary=f"{len(found)} new, {len(rejected)} rejected"
        + "".join(f"; rejected {r.text[:60]!r}: {r.reason}" for r in rejected[:3]),
        seconds=_since(started),
        ok=bool(found),
    )
    # With nothing new the candidates stay as they were, and `stop_reason` says why (the SSPO loop then stops).
    return {
        "candidates": found or state.candidates,
        "iteration": state.iteration + 1,
        "instructions": "",
        "tool_calls": [call],
        "stop_reason": None if found else "the reviser found no new candidate that passes the guards",
    }


def finalize(state: SSPOState, runtime: Runtime[Context]) -> dict:
    """Keep the best candidate of every round, not the last: by mean rank, or by a VLM tournament."""
    ctx = runtime.context
    update: dict = {"best": select_best(state.evaluated), "stop_reason": state.stop_reason or "stopped"}
    if ctx.config.select == "tournament" and "compare_videos" in ctx.tools:
        update["best"], update["tool_calls"] = _tournament(state, ctx)
    return update


def _tournament(state: SSPOState, ctx: Context) -> tuple[Evaluation | None, list[ToolCall]]:
    """A knockout of the best-ranked distinct prompts with videos, the best against the last.

    The VLM judges each pair in both orders (against its position bias); only two votes for the lower-ranked one
    send it through, so a split or failed verdict keeps the mean-rank order.
    """
    entrants: list[Evaluation] = []
    for e in rank_order(state.evaluated):
        if e.video and e.prompt not in {x.prompt for x in entrants}:
            entrants.append(e)
    entrants = entrants[: ctx.config.tournament_size]
    calls: list[ToolCall] = []
    while len(entrants) > 1:
        winners = []
        for i in range((len(entrants) + 1) // 2):
            first, second = entrants[i], entrants[len(entrants) - 1 - i]
            if first is second:  # a bye for the middle one of an odd round
                winners.append(first)
                continue
            votes = []
            for a, b in ((first, second), (second, first)):
                args = {
                    "video_a": str(ctx.run_dir / a.video),
                    "video_b": str(ctx.run_dir / b.video),
                    "prompt": state.input,
                }
                result, call = call_tool(ctx, "compare_videos", args, Comparison)
                calls.append(call)
                if result:
                    votes.append(a if result.winner == "A" else b)
            winners.append(second if len(votes) == 2 and all(v is second for v in votes) else first)
        entrants = winners  # still in rank order: the better-ranked side of each pair comes first
    return (entrants[0] if entrants else select_best(state.evaluated)), calls
