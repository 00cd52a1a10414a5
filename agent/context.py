"""What every node can use but the checkpoint does not hold: settings, tools and loaded models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from tools.critics.base import Critic
from tools.generator import GenerationParams, VideoGenerator
from tools.lc_tools import critic_tool, generate_video_tool, graph_lookup_tool, refine_prompt_tool
from tools.revise import PromptReviser
from tools.stage1 import Stage1

if TYPE_CHECKING:
    from agent.controllers import Controller


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
    params: GenerationParams = Field(default_factory=GenerationParams)


@dataclass
class Context:
    """The run-time context of the SSPO graph (LangGraph's `context_schema`)."""

    config: SSPOConfig
    tools: dict[str, BaseTool] = field(repr=False)
    critics: list[str]
    reviser: PromptReviser = field(repr=False)
    controller: Controller = field(repr=False)
    run_dir: Path


def make_tools(
    stage1: Stage1, critics: list[Critic], generator: VideoGenerator | None, params: GenerationParams, run_dir: Path
) -> dict[str, BaseTool]:
    """The tools the nodes call, by name; without a generator there is no `generate_video` (chat without videos)."""
    tools = [
        refine_prompt_tool(stage1),
        graph_lookup_tool(stage1.lookup),
        *([generate_video_tool(generator, params, run_dir)] if generator else []),
        *(critic_tool(c) for c in critics),
    ]
    return {t.name: t for t in tools}
