"""The `GraphStore` protocol every relation-graph backend implements, and how a location picks one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from rapo.common import GraphFileError
from rapo.graph_db.embeddings import EMBEDDING_DIM, Embedder
from rapo.graph_db.model import Hit, Kind, Neighbour

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

    # Copying whole graphs between stores (graph_db.transfer): batches in each store's own text order.

    def export_nodes(self, kind: Kind, after: str, limit: int) -> list[NodeRow]:
        """Up to `limit` nodes of `kind` whose text sorts after `after` ("" for the first), in text order."""
        ...

    def export_edges(self, after: str, scenes: int) -> tuple[list[EdgeRow], str | None]:
        """The edges of the next `scenes` scenes whose text sorts after `after`, and the last of those scenes."""
        ...

    def put(self, nodes: Sequence[NodeRow], edges: Sequence[EdgeRow], progress: dict) -> None:
        """Write rows with exactly their counts (writing twice changes nothing) and record `progress`, atomically."""
        ...

    def progress(self) -> dict | None:
        """What an unfinished copy into this store recorded with its last `put`; None when there is none."""
        ...

    def finish(self, meta: GraphMeta) -> None:
        """End a copy: set the metadata and forget the progress."""
        ...

    def clear(self) -> None:
        """Delete the whole graph."""
        ...


def check_embedder(store: GraphStore, embedder: Embedder) -> GraphMeta:
    """The graph's metadata, once it is known that `embedder` made its vectors; fails before any work starts.

    Raises:
        GraphFileError: the graph is empty, or was built with another embedder or embedding dimension.
    """
    meta = store.meta()
    if meta.embedder != embedder.model_id:
        raise GraphFileError(f"graph {store.location} was built with embedder {meta.embedder}, not {embedder.model_id}")
    if meta.dim != EMBEDDING_DIM:
        raise GraphFileError(
            f"graph {store.location} has {meta.dim}-d embeddings; the embedder {embedder.model_id} makes "
            f"{EMBEDDING_DIM}-d ones: rebuild the graph with this embedder"
        )
    return meta
