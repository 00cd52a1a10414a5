"""LangChain tools over the plain capability classes, each with a pydantic argument schema.

Nodes of the agent call capabilities through these tools, so a tool-calling LLM and the
deterministic policy go through the same doors, and every call can be recorded the same way.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from rapo.tools.critics.base import Critic
from rapo.tools.generator import GenerationParams, VideoGenerator
from rapo.tools.retrieval import GraphLookup
from rapo.tools.stage1 import Stage1
from rapo.tools.video import Video, read_video

if TYPE_CHECKING:
    from rapo.tools.critics.vlm_judge import VlmJudge


class LookupArgs(BaseModel):
    """Arguments of `graph_lookup`."""

    prompt: str = Field(description="A text-to-video prompt, 1-2000 characters.")
    top_k: int = Field(3, ge=1, le=50, description="Scenes to expand.")
    threshold: float = Field(0.5, ge=-1, le=1, description="Minimum cosine similarity of a modifier to the prompt.")


class RefineArgs(BaseModel):
    """Arguments of `refine_prompt`."""

    prompt: str = Field(description="The user's text-to-video prompt, 1-2000 characters.")
    seed: int = Field(0, description="Seed of every sampled LLM step.")
    pin: list[str] = Field(default_factory=list, description="Retrieved modifiers (exact text) to merge for sure.")
    ban: list[str] = Field(default_factory=list, description="Retrieved modifiers (exact text) never to merge.")


class GenerateArgs(BaseModel):
    """Arguments of `generate_video`."""

    prompt: str = Field(description="The prompt to render.")
    seed: int = Field(0, description="Seed of the diffusion sampler; the same seed makes comparisons fair.")


class CritiqueArgs(BaseModel):
    """Arguments of a critic tool."""

    video: str = Field(description="Path of the mp4 to score.")
    prompt: str = Field(description="The user's prompt, which the video is judged against.")
    meta: dict[str, Any] = Field(
        default_factory=dict, description="What the prompt file says about the prompt (e.g. physical_laws)."
    )


class CompareArgs(BaseModel):
    """Arguments of `compare_videos`."""

    video_a: str = Field(description="Path of the first mp4.")
    video_b: str = Field(description="Path of the second mp4.")
    prompt: str = Field(description="The user's prompt, which both videos are judged against.")


class Comparison(BaseModel):
    """The verdict of `compare_videos`."""

    winner: Literal["A", "B"]
    reason: str = ""


def graph_lookup_tool(lookup: GraphLookup) -> StructuredTool:
    """`graph_lookup`: modifiers from the relation graph for a prompt."""
    return StructuredTool.from_function(
        func=lambda prompt, top_k=3, threshold=0.5: lookup.retrieve(prompt, top_k, threshold).model_dump(mode="json"),
        name="graph_lookup",
        description="Find scenes similar to the prompt in the relation graph of training captions, and the actions, "
        "atmospheres and subjects linked to them, each with its cosine similarity to the prompt (-1 to 1).",
        args_schema=LookupArgs,
    )


def refine_prompt_tool(stage1: Stage1) -> StructuredTool:
    """`refine_prompt`: the whole Stage 1 pipeline."""
    return StructuredTool.from_function(
        func=lambda prompt, seed=0, pin=(), ban=(): stage1.run(prompt, seed, pin, ban).model_dump(mode="json"),
        name="refine_prompt",
        description="Rewrite a prompt with Stage 1 (retrieved modifiers merged one at a time, refactored to the style "
        "of training captions, compared with a plain rewrite). Returns the chosen prompt and every candidate.",
        args_schema=RefineArgs,
    )


def generate_video_tool(generator: VideoGenerator, params: GenerationParams, out_dir: Path) -> StructuredTool:
    """`generate_video`: render a prompt into an mp4 (cached by content hash)."""
    return StructuredTool.from_function(
        func=lambda prompt, seed=0: generator.generate(prompt, seed, params, out_dir).model_dump(mode="json"),
        name="generate_video",
        description=f"Render the prompt with {generator.model_id} ({params.num_frames} frames, "
        f"{params.width}x{params.height}). Returns the mp4 path; a video made before is taken from the cache.",
        args_schema=GenerateArgs,
    )


@lru_cache(maxsize=2)
def _decoded(path: str, mtime: float) -> Video:
    """Decode each video once for all the critics that score it in a row."""
    return read_video(Path(path))


def _read(video: str) -> Video:
    """A video by path, decoded once for the calls that read it in a row (a missing file raises in read_video)."""
    path = Path(video)
    return _decoded(str(path), path.stat().st_mtime) if path.is_file() else read_video(path)


def compare_videos_tool(judge: VlmJudge) -> StructuredTool:
    """`compare_videos`: which of two videos matches the prompt better, by the VLM judge (tournament selection)."""

    def compare(video_a: str, video_b: str, prompt: str) -> dict:
        a, b = _read(video_a), _read(video_b)  # the same pair is judged in both orders: decoded once
        winner, reason = judge.compare(a, b, prompt)
        return Comparison(winner=winner, reason=reason).model_dump()

    return StructuredTool.from_function(
        func=compare,
        name="compare_videos",
        description="Show frames of two videos to the VLM judge and ask which matches the prompt better. Returns "
        "the winner, 'A' or 'B', and the judge's reason.",
        args_schema=CompareArgs,
    )


def critic_tool(critic: Critic) -> StructuredTool:
    """`critic_<name>`: score an mp4 with one critic."""

    def score(video: str, prompt: str, meta: dict[str, Any] | None = None) -> dict:
        return critic.score(_read(video), prompt, meta or {}).model_dump(mode="json")

    return StructuredTool.from_function(
        func=score,
        name=f"critic_{critic.name}",
        description=f"Score a video with the {critic.name} critic: a score from 0 to 1 (higher is better), its raw "
        "measurements and feedback text.",
        args_schema=CritiqueArgs,
    )
