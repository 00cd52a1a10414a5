"""What every node can use but the checkpoint does not hold: settings, tools and loaded models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from rapo.agent.loop.state import SSPOState
from rapo.tools.generator import GenerationParams
from rapo.tools.revise import PromptReviser


class SSPOConfig(BaseModel):
    """Budgets, thresholds and seeds of the loop; recorded with the run."""

    max_iters: int = Field(4, ge=0, le=50, description="Revision rounds after Stage 1's candidates (the paper: 4).")
    candidates: int = Field(2, ge=1, le=16, description="Candidates per round (K).")
    max_videos: int = Field(12, ge=1, description="Videos per prompt, cached ones included.")
    max_seconds: float | None = Field(None, gt=0, description="Wall-clock budget per prompt.")
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Critic name -> score in [0, 1] that ends the loop when all are met."
    )
    seed: int = Field(0, description="Seed of the LLM steps.")
    video_seed: int = Field(0, description="Seed of every video of a prompt, so candidates differ only in prompt.")
    seeds: int = Field(
        1,
        ge=1,
        le=16,
        description="Noise seeds per candidate (video_seed, video_seed + 1, ...); selection ranks "
        "the candidates on each seed, so the best prompt is not fitted to one seed's noise.",
    )

    @property
    def video_seeds(self) -> list[int]:
        """The noise seeds every candidate is rendered with."""
        return [self.video_seed + i for i in range(self.seeds)]

    params: GenerationParams = Field(default_factory=GenerationParams)
    select: Literal["rank", "tournament"] = Field(
        "rank",
        description="How the best is chosen when the loop stops: the lowest mean rank, or a knockout "
        "tournament of the best-ranked candidates judged pairwise by the VLM (both orders).",
    )
    tournament_size: int = Field(4, ge=2, le=16, description="Candidates (best by mean rank) in the tournament.")


class Controller(Protocol):
    """Decides between another revision round and finishing; returns a partial state update."""

    name: str

    def decide(self, state: SSPOState, ctx: Context) -> dict:
        """The update with `next_action` (and `instructions`, `stop_reason`, `tool_calls` as needed)."""
        ...


@dataclass
class Context:
    """The run-time context of the SSPO graph (LangGraph's `context_schema`)."""

    config: SSPOConfig
    tools: dict[str, BaseTool] = field(repr=False)
    critics: list[str]
    reviser: PromptReviser = field(repr=False)
    controller: Controller = field(repr=False)
    run_dir: Path
    models: dict = field(default_factory=dict, repr=False)
    """Model ids, template versions and graph provenance of the generator and Stage 1, for the run's record."""
