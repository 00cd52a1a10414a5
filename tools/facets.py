"""Facets that cannot conflict with the prompt: camera, light, look and motion, each only where the prompt is silent.

A small model's free sentences are often wrong about the scene (`tools/verifier.py` drops those it catches); these
are not about the scene at all. Each facet is a fixed sentence of how the video is shot, added when the prompt says
nothing of its kind: a prompt that names a camera move, a time of day or light, a style, or a still scene keeps its
own and gets no facet of that kind. The sentences follow what the video models' own prompt guides ask for (Wan2.1's
extender and HunyuanVideo's structured captions name shot, light and style).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field


class Facet(BaseModel):
    """One kind of facet: the words that mean the prompt already speaks to it, and the sentence added otherwise."""

    name: str
    speaks_to: str = Field(description="A regular expression over the lower-cased prompt.")
    sentence: str


# A named style, medium or look: the prompt then owns how the video looks, and the facets that say "realistic" stay out
_STYLE = (
    r"style|painting|painted|paint|cartoon|anime|animated|animation|sketch|drawing|illustration|watercolou?r|oil|"
    r"pixel|3d|render|cgi|black and white|black-and-white|monochrome|vintage|retro|surreal|surrealism|surrealist|"
    r"claymation|lego|origami|van gogh|ukiyo|cyberpunk|steampunk|abstract|comic|photo|photograph|film|cinematic|"
    r"realistic|photorealistic|toy|pixar|disney|game|minecraft|fantasy|dream|dreamlike|magical"
)
FACETS = [
    Facet(
        name="camera",
        speaks_to=r"\b(camera|shot|shots|pan|pans|panning|zoom|zooms|zooming|tilt|tilts|dolly|close-?up|aerial|view|"
        r"angle|perspective|frame|framing|tracking|orbit|orbits|pov|first-person|footage|filmed|lens|timelapse|"
        r"time-lapse|slow motion|slow-motion|selfie)\b",
        sentence="The camera keeps the whole scene in clear view.",
    ),
    Facet(
        name="light",
        speaks_to=r"\b(light|lights|lit|lighting|sun|sunny|sunlight|sunlit|sunset|sunrise|dawn|dusk|night|nighttime|"
        r"dark|darkness|shadow|shadows|glow|glows|glowing|neon|moon|moonlight|bright|dim|candle|candles|lamp|fire|"
        r"flame|flames|twilight|evening|morning|noon|overcast|fog|foggy|mist|misty|cloudy|rain|rainy|storm|stormy|"
        r"snow|snowy|underwater|space|lightning|firework|fireworks|" + _STYLE + r")\b",
        sentence="Natural lighting with realistic colours and fine detail.",
    ),
    Facet(name="look", speaks_to=r"\b(" + _STYLE + r")\b", sentence="Photorealistic, high-definition video."),
    Facet(
        name="motion",
        speaks_to=r"\b(still|static|motionless|tableau|frozen|freeze|photo|image|picture|portrait|timelapse|"
        r"time-lapse|slow motion|slow-motion|stop-motion|" + _STYLE + r")\b",
        sentence="Movements are smooth and physically realistic.",
    ),
]


def facets_for(prompt: str) -> list[Facet]:
    """The facets whose kind `prompt` does not speak to, in FACETS' order."""
    text = prompt.lower()
    return [f for f in FACETS if not re.search(f.speaks_to, text)]


def with_facets(text: str, prompt: str, max_words: int) -> tuple[str, list[str]]:
    """`text` with the prompt's facets appended while it stays within `max_words`; the names of those added."""
    added = []
    for facet in facets_for(prompt):
        if len(text.split()) + len(facet.sentence.split()) > max_words:
            break
        text = f"{text.rstrip()} {facet.sentence}" if text.rstrip().endswith((".", "!", "?")) else \
            f"{text.rstrip()}. {facet.sentence}"  # fmt: skip
        added.append(facet.name)
    return text, added
