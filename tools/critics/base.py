"""What every critic returns, and the protocol it implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pydantic import BaseModel, Field

from rapo.tools.video import Video


class CriticResult(BaseModel):
    """One critic's verdict on one video."""

    critic: str = Field(description="The critic's name, e.g. 'flow'.")
    score: float = Field(ge=0.0, le=1.0, description="Normalised score: higher is better.")
    raw: dict[str, float | str | list[float]] = Field(
        default_factory=dict, description="The measurements behind the score, in their own units."
    )
    feedback: str = Field(description="A sentence or two for the LLM that revises the prompt.")
    seconds: float = Field(0.0, description="Time the critic took.")


class Critic(Protocol):
    """Scores videos. Heavy models load on first use, once per critic object."""

    name: str

    def score(self, video: Video, prompt: str, meta: Mapping[str, object] | None = None) -> CriticResult:
        """Score `video` against the user's `prompt`.

        `meta` is what the prompt file says about the prompt besides its text (a benchmark's `physical_laws`,
        `dimension`, category); critics that have no use for it ignore it.
        """
        ...
