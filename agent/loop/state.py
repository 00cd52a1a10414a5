"""The SSPO loop's state: what is checkpointed after every node, one thread per prompt per run."""

from __future__ import annotations

import operator
from typing import Annotated, Literal

from pydantic import BaseModel, Field, JsonValue

from rapo.tools.generator import GeneratedVideo
from rapo.tools.retrieval import Modifier

Action = Literal["revise", "finish"]


class ToolCall(BaseModel):
    """One tool call as the trajectory records it."""

    tool: str
    args: dict[str, object]
    summary: str = Field(description="A short summary of the result, or the error.")
    seconds: float
    ok: bool = True


class RoundVideo(BaseModel):
    """One candidate of the current round and its video (None when generation failed, with the error)."""

    index: int = Field(description="Position of the candidate within its round.")
    prompt: str
    seed: int = Field(0, description="The noise seed the video was rendered with.")
    video: GeneratedVideo | None = None
    error: str | None = None


class Evaluation(BaseModel):
    """One candidate prompt, its video and the critics' verdicts."""

    iteration: int = Field(description="0 for Stage 1's candidates, then one more per revision round.")
    index: int = Field(description="Position of the candidate within its round.")
    prompt: str
    video: str | None = Field(None, description="The mp4, relative to the run dir; None if generation failed.")
    video_key: str | None = None
    scores: dict[str, float] = Field(
        default_factory=dict, description="Critic name -> score in [0, 1]; the mean over the seeds with `--seeds`."
    )
    seed_scores: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Noise seed -> critic name -> score, when rendered on several seeds."
    )
    feedback: dict[str, str] = Field(default_factory=dict, description="Critic name -> feedback text.")
    error: str | None = Field(None, description="Why this candidate has no scores, if it has none.")

    @property
    def fused(self) -> float:
        """The mean of the critics' scores: the tie-breaker of mean-rank selection."""
        return sum(self.scores.values()) / len(self.scores) if self.scores else 0.0


class SSPOState(BaseModel):
    """State of one prompt's optimisation."""

    input: str = Field(description="The user's prompt, as given.")
    meta: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="What the prompt file says about the prompt besides its text (PhyGenBench's `physical_laws`, "
        "VBench's `dimension`): handed to every critic and to the reviser.",
    )
    iteration: int = Field(0, description="The current round: 0 is Stage 1's candidates.")
    candidates: list[str] = Field(default_factory=list, description="Prompts of the current round, to evaluate.")
    modifiers: list[Modifier] = Field(
        default_factory=list, description="Stage 1's retrieved modifiers with their similarity to the prompt."
    )
    merged: list[str] = Field(default_factory=list, description="The modifiers Stage 1 merged, in merge order.")
    pinned: list[str] = Field(default_factory=list, description="Modifiers Stage 1 must merge (a person's pins).")
    banned: list[str] = Field(default_factory=list, description="Modifiers Stage 1 must not merge (a person's bans).")
    videos: list[RoundVideo] = Field(default_factory=list, description="The current round's generated videos.")
    evaluated: Annotated[list[Evaluation], operator.add] = Field(
        default_factory=list, description="Every candidate evaluated so far, all rounds."
    )
    tool_calls: Annotated[list[ToolCall], operator.add] = Field(
        default_factory=list, description="Every tool call, in order."
    )
    videos_made: int = Field(0, description="Videos generated (or taken from the cache) for this prompt.")
    started_at: float = Field(0.0, description="Wall-clock start (time.time()) for the time budget.")
    next_action: Action | None = Field(None, description="What the controller decided after the last critique.")
    instructions: str = Field("", description="Extra guidance for the next revision (from the llm controller).")
    stop_reason: str | None = Field(None, description="Why the loop stopped.")
    best: Evaluation | None = Field(None, description="The best candidate by mean rank, set when the loop stops.")


class Turn(BaseModel):
    """One turn of the person in a chat session, as `interrupt()` receives it."""

    action: Literal["accept", "edit", "change", "pin", "ban", "generate"]
    text: str = Field(
        "", description="edit: the new prompt; change: the change asked for, in words; pin, ban: the modifier."
    )
    candidate: int = Field(0, ge=0, description="accept, edit: the position of the candidate it applies to.")


class ChatState(SSPOState):
    """State of one chat session: the SSPO state, plus the person's turns."""

    turns: Annotated[list[Turn], operator.add] = Field(default_factory=list, description="The turns, in order.")
    accepted: str | None = Field(None, description="The prompt the person accepted; set when the session ends.")
