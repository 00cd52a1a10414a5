"""The relation graph's data model: node kinds, extracted phrases, nodes, edges and search hits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """A node's kind. Scenes are places; the other kinds are modifiers linked to scenes."""

    SCENE = "scene"
    ACTION = "action"
    ATMOSPHERE = "atmosphere"
    SUBJECT = "subject"


MODIFIER_KINDS: tuple[Kind, ...] = (Kind.ACTION, Kind.ATMOSPHERE, Kind.SUBJECT)

_SPACE = re.compile(r"\s+")


def normalize_phrase(text: str) -> str:
    """Return the dedupe key of a phrase: lower case, single spaces, no surrounding punctuation."""
    return _SPACE.sub(" ", text.lower()).strip(" \t\n.,;:!?\"'")


@dataclass(frozen=True)
class CaptionPhrases:
    """The typed phrases found in one caption; every phrase is already normalized."""

    scenes: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    atmospheres: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()

    def of_kind(self, kind: Kind) -> tuple[str, ...]:
        """The phrases of one kind."""
        return {
            Kind.SCENE: self.scenes,
            Kind.ACTION: self.actions,
            Kind.ATMOSPHERE: self.atmospheres,
            Kind.SUBJECT: self.subjects,
        }[kind]


@dataclass(frozen=True)
class Node:
    """A graph node; `count` is the number of captions the phrase appeared in."""

    kind: Kind
    text: str
    count: int


@dataclass(frozen=True)
class Hit:
    """A node found by vector search, with its cosine similarity to the query."""

    node: Node
    score: float


@dataclass(frozen=True)
class Neighbour:
    """A modifier linked to a scene; `weight` is the number of captions in which both appear."""

    scene: str
    node: Node
    weight: int
