"""What a process needs to run the SSPO loop of a run: the single-process CLI and every Ray worker build it here."""

from __future__ import annotations

from pathlib import Path

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from agent.context import Context, SSPOConfig
from agent.controllers import LLMController, PolicyController
from tools.generator import VideoGenerator
from tools.lc_tools import generate_video_tool, graph_lookup_tool, refine_prompt_tool
from tools.revise import PromptReviser
from tools.stage1 import Stage1, Stage1Settings


class RunSpec(BaseModel):
    """A run's settings as every worker rebuilds them: sent to each Ray worker, so plain data only."""

    generator: str = Field(description="tiny-wan, tiny-cogvideox, or a diffusers pipeline folder.")
    cpu_offload: bool = False
    vae_tiling: bool = False
    critics: list[str] = Field(description="Critic names, in scoring order.")
    config: SSPOConfig
    graph: str = Field(description="The resolved relation graph: a file or a Neo4j URL.")
    llm: str | None = Field(None, description="The --llm string, passed through unchanged.")
    llm_dtype: str = "auto"
    adapter: str | None = Field(None, description="--adapter as given; None means the default (agent.refine).")
    stage1: Stage1Settings = Field(
        default_factory=lambda: Stage1Settings(both_branches=True), description="Round 0 renders both branches."
    )
    run_dir: Path = Field(description="The run dir, shared by every worker.")
    store: str | None = Field(None, description="A postgresql:// URL, or None for the SQLite files in the run dir.")
    controller: str = Field("policy", description="policy, or llm: the served --llm model picks each step.")
    critic_options: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Critic name -> constructor options (the vlm judge's endpoint, CLIP's path)."
    )


def make_context(spec: RunSpec, stage1: Stage1, generator: VideoGenerator, critic_tools: list[BaseTool]) -> Context:
    """The SSPO graph's run-time context: the tools every node calls, the reviser and the controller."""
    tools = [
        refine_prompt_tool(stage1),
        graph_lookup_tool(stage1.lookup),
        generate_video_tool(generator, spec.config.params, spec.run_dir),
        *critic_tools,
    ]
    return Context(
        config=spec.config,
        tools={t.name: t for t in tools},
        critics=spec.critics,
        reviser=PromptReviser(stage1.llm.plain()),  # the adapter was trained for Stage 1's rewrite only
        controller=(
            LLMController(stage1.llm.chat_model(seed=spec.config.seed), allowed=["graph_lookup", "revise", "finish"])
            if spec.controller == "llm"
            else PolicyController()
        ),
        run_dir=spec.run_dir,
    )
