"""Relation-graph lookup: the prompt's nearest scenes, and their modifiers ranked by similarity to it."""

from __future__ import annotations

import threading
import time

import numpy as np
from pydantic import BaseModel, Field

from rapo.graph_db.embeddings import Embedder
from rapo.graph_db.model import Kind
from rapo.graph_db.store import GraphStore
from rapo.tools.guards import content_words, stem


class Modifier(BaseModel):
    """A retrieved modifier with its cosine similarity to the prompt."""

    kind: Kind
    text: str
    score: float = Field(description="Cosine similarity to the prompt, in [-1, 1].")
    scene: str = Field(description="The retrieved scene that links to it (the most similar, if several).")
    weight: int = Field(description="Captions in which scene and modifier appear together.")


class Retrieval(BaseModel):
    """What the graph offered for one prompt."""

    scenes: list[tuple[str, float]] = Field(description="Top-k scenes with their similarity to the prompt.")
    modifiers: list[Modifier] = Field(description="Modifiers above the threshold, best first.")
    seconds: float


class GraphLookup:
    """Finds modifiers for a prompt: top-k scenes, then every neighbouring modifier ranked by similarity.

    Deterministic: equal scores are ordered by co-occurrence weight, then by text. A modifier whose
    content words the prompt already has adds nothing and is skipped.
    """

    def __init__(self, store: GraphStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self._store_lock = threading.Lock()  # stores are not thread-safe; refine may run prompts in threads

    def retrieve(
        self, prompt: str, top_k: int = 3, threshold: float = 0.5, query: np.ndarray | None = None
    ) -> Retrieval:
        """Retrieve the modifiers for `prompt`.

        Args:
            prompt: the user's prompt.
            top_k: how many of the most similar scenes to expand.
            threshold: minimum cosine similarity between a modifier and the prompt.
            query: the prompt's embedding, when the caller has it already.
        """
        started = time.perf_counter()
        query = self.embedder.encode_one(prompt) if query is None else query
        with self._store_lock:
            scenes = self.store.search(Kind.SCENE, query, top_k)
            neighbours, vectors = self.store.neighbours([hit.node.text for hit in scenes])
        scores = vectors @ query  # (N,)
        prompt_stems = {stem(w) for w in content_words(prompt)}
        best: dict[tuple[Kind, str], Modifier] = {}
        for neighbour, score in zip(neighbours, scores.tolist(), strict=True):
            node = neighbour.node
            if score < threshold or {stem(w) for w in content_words(node.text)} <= prompt_stems:
                continue
            key = (node.kind, node.text)
            if key not in best or (score, neighbour.weight) > (best[key].score, best[key].weight):
                best[key] = Modifier(
                    kind=node.kind,
                    text=node.text,
                    score=round(score, 6),
                    scene=neighbour.scene,
                    weight=neighbour.weight,
                )
        ranked = sorted(best.values(), key=lambda m: (-m.score, -m.weight, m.text))
        return Retrieval(
            scenes=[(hit.node.text, round(hit.score, 6)) for hit in scenes],
            modifiers=ranked,
            seconds=round(time.perf_counter() - started, 6),
        )
