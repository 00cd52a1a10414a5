"""Settings in one typed place: every field has a description and an environment-variable fallback."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


class Settings(BaseModel):
    """Defaults for every command; a command-line option overrides its field."""

    graph: str | None = Field(
        default_factory=lambda: _env("RAPO_GRAPH"),
        description="Relation graph file ($RAPO_GRAPH); none means the shipped default graph.",
    )
    llm: str | None = Field(
        default_factory=lambda: _env("RAPO_LLM"),
        description="Local causal LM folder or openai:URL[#MODEL] ($RAPO_LLM); none means SmolLM2-135M-Instruct.",
    )
    vlm: str | None = Field(
        default_factory=lambda: _env("RAPO_VLM"),
        description="The vlm critic's served model, openai:URL[#MODEL] ($RAPO_VLM).",
    )
    llm_dtype: str = Field(
        default_factory=lambda: _env("RAPO_LLM_DTYPE", "auto"),
        description=(
            "auto, q8_0, f16, f32 (llama.cpp), bfloat16 or float32 (transformers) ($RAPO_LLM_DTYPE); auto picks "
            "q8_0 for the default LLM when llama-cpp-python is installed, else the CPU's fastest."
        ),
    )
    seed: int = Field(default_factory=lambda: int(_env("RAPO_SEED", "0")), description="Base seed ($RAPO_SEED).")
    target: str = Field(
        default_factory=lambda: _env("RAPO_TARGET", "wan"),
        description="Target video model's prompt profile ($RAPO_TARGET): wan, cogvideox, hunyuan, ltx or short.",
    )
    debug: bool = Field(
        default_factory=lambda: _env("RAPO_DEBUG", "") not in ("", "0"),
        description="Show tracebacks instead of one-line errors ($RAPO_DEBUG=1).",
    )
