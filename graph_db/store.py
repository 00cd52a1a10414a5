"""The `GraphStore` protocol every relation-graph backend implements, and how a location picks one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from graph_db.model import Hit, Kind, Neighbour

SCHEMA_VERSION = 1


class GraphSource(BaseModel):
    """One batch of data that went into a graph."""

    location: str = Field(description="File or package the data came from.")
    format: str = Field(description="captions-tsv, captions-csv, captions-jsonl, vbench-txt, rapo, default.")
    captions: int = Field(description="Captions (or records) read from it.")
    added_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class GraphMeta(BaseModel):
    """What a graph was built from and with; stored in the graph and recorded in every result."""

    schema_version: int = SCHEMA_VERSION
    embedder: str = Field(description="Model id of the embedder that made the node vectors.")
    dim: int = Field(description="Embedding dimension.")
    captions: int = Field(0, description="Captions (or records) the graph was built from, over all sources.")
    caption_words_mean: float = Field(0.0, description="Mean words per caption: the refactoring step's length target.")
    sources: list[GraphSource] = Field(default_factory=list)


@dataclass(frozen=True)
class NodeRow:
    """A node to write: counts add up when the node exists already."""

    kind: Kind
    text: str
    count: int
    embedding: np.ndarray  # (dim,) float32, unit length


@dataclass(frozen=True)
class EdgeRow:
    """A scene–modifier co-occurrence to write: counts add up when the edge exists already."""

    scene: str
    kind: Kind
    text: str
    count: int


class GraphStats(BaseModel):
    """Sizes of a graph, for `rapo graph stats` and benchmarks."""

    location: str
    nodes: dict[str, int]
    edges: dict[str, int]
    meta: GraphMeta


class GraphStore(Protocol):
    """A relation graph: typed phrase nodes with embeddings, and weighted scene–modifier edges."""

    location: str

    def meta(self) -> GraphMeta:
        """The graph's metadata."""
        ...

    def write(self, nodes: Sequence[NodeRow], edges: Sequence[EdgeRow], meta: GraphMeta) -> None:
        """Add nodes and edges (summing counts with existing ones) and replace the metadata, atomically."""
        ...

    def search(self, kind: Kind, query: np.ndarray, k: int) -> list[Hit]:
        """The `k` nodes of `kind` most cosine-similar to the unit vector `query`, best first.

        Ties are broken by text, so results are deterministic.
        """
        ...

    def neighbours(self, scenes: Sequence[str]) -> tuple[list[Neighbour], np.ndarray]:
        """Every modifier linked to one of `scenes`, and their embeddings as an (N, dim) array."""
        ...

    def stats(self) -> GraphStats:
        """Node counts per kind and edge counts per modifier kind."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


def open_store(location: str | Path, *, create: bool = False) -> GraphStore:
    """Open the graph at `location`: a file path for the embedded store.

    Args:
        location: where the graph lives.
        create: make a new empty graph when the file does not exist (for building and importing).
    """
    from graph_db.sqlite_store import SQLiteGraphStore

    return SQLiteGraphStore(Path(location), create=create)
