"""Target-model profiles: how long and in what style a video model wants its prompts.

Each range comes from the model's own prompt guide or prompt extender; `rapo refine --target NAME` picks one and
every result records it. The default is Wan2.1's, the most used open text-to-video model family.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

TargetName = Literal["wan", "cogvideox", "hunyuan", "ltx", "short"]


class TargetProfile(BaseModel):
    """The prompt length a video model was trained on and its prompt guide asks for."""

    name: TargetName
    min_words: int = Field(ge=1)
    max_words: int = Field(ge=1)
    source: str = Field(description="Where the range comes from.")

    @property
    def target_words(self) -> int:
        """The length the discriminator prefers: the middle of the range."""
        return (self.min_words + self.max_words) // 2

    def fits(self, text: str) -> bool:
        """Whether `text` has a word count inside the range."""
        return self.min_words <= len(text.split()) <= self.max_words


PROFILES: dict[str, TargetProfile] = {
    p.name: p
    for p in (
        TargetProfile(
            name="wan", min_words=80, max_words=100,
            source="Wan2.1's prompt extender (wan/utils/prompt_extend.py) asks for 80-100 (words in its Chinese "
            "system prompt) with motion and camera; its rewrites of VBench average 131 words",
        ),
        TargetProfile(
            name="cogvideox", min_words=50, max_words=120,
            source="CogVideoX encodes at most 226 T5 tokens (about 170 words); its convert_demo.py examples run 50-100",
        ),
        TargetProfile(
            name="hunyuan", min_words=40, max_words=90,
            source="HunyuanVideo's text encoder takes 256 tokens; its structured captions (subject, scene, style, "
            "shot, light, mood) run 40-90 words",
        ),
        TargetProfile(
            name="ltx", min_words=60, max_words=150,
            source="LTX-Video's prompt enhancer writes up to 150 words; its guide asks for one detailed paragraph",
        ),
        TargetProfile(
            name="short", min_words=8, max_words=35,
            source="models trained on short captions (LaVie, Latte, VideoCrafter: WebVid-style, about 12-20 words)",
        ),
    )
}  # fmt: skip
DEFAULT_TARGET: TargetName = "wan"


def profile(name: str) -> TargetProfile:
    """The profile called `name`; a ValueError listing the known ones otherwise."""
    if name not in PROFILES:
        raise ValueError(f"unknown target {name!r}: choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
