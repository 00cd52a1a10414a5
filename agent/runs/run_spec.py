"""The one composition root: a run's settings as plain data (`RunSpec`), and `build_context` that wires them.

The batch, every Ray worker, chat sessions and the web UI all build the loop's run-time context here.
"""

from __future__ import annotations

from pathlib import Path

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from rapo.agent.loop.context import Context, SSPOConfig
from rapo.agent.loop.controllers import LLMController, PolicyController
from rapo.agent.runs.refine import open_graph, stage1_pipeline
from rapo.agent.runs.refine_client import RemoteStage1
from rapo.agent.settings import Settings
from rapo.common import RapoError
from rapo.graph_db.embeddings import Embedder
from rapo.tools.critics.registry import make_critic
from rapo.tools.generator import VideoGenerator
from rapo.tools.lc_tools import (
    compare_videos_tool,
    critic_tool,
    generate_video_tool,
    graph_lookup_tool,
    refine_prompt_tool,
)
from rapo.tools.profiles import profile
from rapo.tools.revise import PromptReviser
from rapo.tools.stage1 import Stage1, Stage1Settings
from rapo.tools.verifier import Verifier


class RunSpec(BaseModel):
    """A run's settings as every process rebuilds them: sent to each Ray worker, so plain data only."""

    generator: str | None = Field(description="A tiny-* spec or a pipeline folder; None: no videos.")
    cpu_offload: bool = False
    vae_tiling: bool = False
    critics: list[str] = Field(description="Critic names, in scoring order.")
    config: SSPOConfig
    graph: str | None = Field(None, description="A graph file or a Neo4j URL; None: $RAPO_GRAPH, else the default.")
    llm: str | None = Field(None, description="The --llm string, passed through unchanged; None: the default LLM.")
    llm_dtype: str = "auto"
    adapter: str | None = Field(None, description="--adapter as given; None means the default (agent.runs.refine).")
    discriminator: str | None = Field(None, description="--discriminator folder; None: Stage 1's hand formula.")
    stage1: Stage1Settings = Field(
        default_factory=lambda: Stage1Settings(both_branches=True), description="Round 0 renders both branches."
    )
    run_dir: Path = Field(description="The run dir (or chat home), shared by every worker: videos go under it.")
    store: str | None = Field(None, description="A postgresql:// URL, or None for the SQLite files in the run dir.")
    controller: str = Field("policy", description="policy, or llm: the served --llm model picks each step.")
    critic_options: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Critic name -> constructor options (the vlm judge's endpoint, CLIP's path)."
    )


def build_context(
    spec: RunSpec,
    *,
    stage1: Stage1 | RemoteStage1 | None = None,
    generator: VideoGenerator | None = None,
    critic_tools: list[BaseTool] | None = None,
    embedder: Embedder | None = None,
) -> Context:
    """The loop's run-time context for `spec`: Stage 1, the tools, the reviser and the controller; loads no model.

    Fails fast (a RapoError) on a bad graph, model path or controller. A Ray worker passes its own `generator`
    (claims-aware) and `critic_tools` (remote); a chat passes a `rapo serve`'s Stage 1 when one runs; the tests pass
    a `stage1` with a scripted LLM; everything not passed is built from `spec`.
    """
    stage1 = stage1 or stage1_pipeline(
        open_graph(spec.graph, Settings(), embedder), spec.llm, spec.llm_dtype, spec.stage1, spec.adapter,
        spec.discriminator,
    )  # fmt: skip
    if spec.controller not in ("policy", "llm"):
        raise RapoError(f"--controller {spec.controller!r}: choose policy or llm")
    if spec.controller == "llm" and not hasattr(stage1.llm, "chat_model"):
        raise RapoError("--controller llm needs a served model with tool calling: --llm openai:URL[#MODEL]")
    if generator is None and spec.generator:
        generator = VideoGenerator(spec.generator, cpu_offload=spec.cpu_offload, vae_tiling=spec.vae_tiling)
    if critic_tools is None:  # nothing to score without videos
        critic_tools = [critic_tool(make_critic(n, **spec.critic_options.get(n, {}))) for n in spec.critics]
    if generator is None:
        critic_tools = []
    elif spec.config.select == "tournament":
        if "vlm" not in spec.critic_options:
            raise RapoError("--select tournament needs the VLM judge: --vlm openai:http://HOST:PORT/v1[#MODEL]")
        critic_tools = [*critic_tools, compare_videos_tool(make_critic("vlm", **spec.critic_options["vlm"]))]
    tools = [
        refine_prompt_tool(stage1),
        graph_lookup_tool(stage1.lookup),
        *([generate_video_tool(generator, spec.config.params, spec.run_dir)] if generator else []),
        *critic_tools,
    ]
    return Context(
        config=spec.config,
        tools={t.name: t for t in tools},
        critics=spec.critics if generator else [],
        # The adapter was trained for Stage 1's rewrite only; revisions are as long as the target model wants
        # and every revision is verified like Stage 1's answers (with Stage 1's verifier when it is local)
        reviser=PromptReviser(
            stage1.llm.plain(),
            profile(spec.stage1.target),
            verifier=(getattr(stage1, "verifier", None) or Verifier()) if spec.stage1.verify else None,
            verify_threshold=spec.stage1.verify_threshold,
        ),  # fmt: skip
        controller=(
            LLMController(stage1.llm.chat_model(seed=spec.config.seed), allowed=["graph_lookup", "revise", "finish"])
            if spec.controller == "llm"
            else PolicyController()
        ),
        run_dir=spec.run_dir,
        models={"generator": generator.model_id if generator else None, "stage1": stage1.models()},
    )
