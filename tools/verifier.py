"""Verified additions: every sentence a rewriter adds to the user's prompt is checked against the prompt first.

First, do no harm: a sentence that contradicts the prompt (a changed count, relation, action or outcome, the main
object replaced), drifts off it (invented people, crowds, places; sounds and smells) or makes no sense is dropped, and
the user's prompt alone is a valid answer. The check is a softmax regression over all-MiniLM-L6-v2 features of
(prompt, sentence) (`features`: the embedder Stage 1 has loaded already), shipped in `tools/verifiers/minilm-judge`
and trained by `rapo.finetune.verifier` on a blind judge's labels of rapo's own sentences and reference rewrites'
sentences on training prompts. A sentence is kept when p(ok) reaches the threshold chosen on held-out labels and
recorded, with the held-out precision and recall, in the folder's `verifier.json`.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from rapo.common import ModelError
from rapo.graph_db.embeddings import Embedder
from rapo.tools.distill import answer_prefix

LABELS = ("ok", "contradicts", "off_topic", "nonsense")
SHIPPED = Path(__file__).resolve().parent / "verifiers" / "minilm-judge"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def sentences(text: str) -> list[str]:
    """`text` split into sentences (at ., ! or ? followed by a capital, a digit or a quote)."""
    return [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]


def added_sentences(prefix: str, text: str) -> list[str]:
    """The sentences of `text` after `prefix` (the user's prompt that the answer starts with), if it starts so."""
    text = " ".join(text.split())
    if prefix and text.lower().startswith(prefix.lower()):
        text = text[len(prefix) :]
    return sentences(text)


class SentenceCheck(BaseModel):
    """The verifier's reading of one added sentence."""

    sentence: str
    p_ok: float = Field(description="Probability that the sentence is faithful, on topic and sensible.")
    flaw: str = Field(description="The likeliest flaw (contradicts, off_topic, nonsense), or ok.")
    kept: bool


def features(prompts: np.ndarray, sentences: np.ndarray) -> np.ndarray:
    """(N, 3 * dim + 1) features of unit-length prompt and sentence embeddings (N, dim) each.

    The elementwise product and absolute difference (what the pair shares and where it differs), the sentence itself
    (what it is about: people, sounds, ...), and their cosine.
    """
    cosine = (prompts * sentences).sum(1, keepdims=True)  # (N, 1)
    return np.hstack([prompts * sentences, np.abs(prompts - sentences), sentences, cosine]).astype(np.float32)


class Verifier:
    """The sentence verifier over an embedder (Stage 1's, or its own); the weights load once, on first use."""

    def __init__(self, path: str | Path = SHIPPED, embedder: Embedder | None = None) -> None:
        self.path = Path(path)
        self.embedder = embedder or Embedder()

    @cached_property
    def config(self) -> dict:
        """`verifier.json`: the threshold, the training data's provenance and the held-out figures."""
        file = self.path / "verifier.json"
        if not file.is_file():
            raise ModelError(f"verifier not found: {file} does not exist (train one: python -m rapo.finetune.verifier)")
        config = json.loads(file.read_text(encoding="utf-8"))
        if config.get("embedder") != self.embedder.model_id:
            raise ModelError(f"verifier {self.path} was trained on {config.get('embedder')!r} embeddings, "
                             f"not {self.embedder.model_id!r}")  # fmt: skip
        return config

    def threshold(self, override: float | None = None) -> float:
        """The least p(ok) a kept sentence has: `override`, else the one chosen in training (verifier.json)."""
        return float(self.config["threshold"]) if override is None else override

    def model_id(self, threshold: float | None = None) -> str:
        """What results record: the folder and the threshold in force."""
        return f"{self.path.name}@{self.threshold(threshold):.3f}"

    @cached_property
    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        self.config  # noqa: B018 - a missing or mismatched folder fails here, with its one-line error
        with np.load(self.path / "weights.npz") as data:
            return data["w"], data["b"]  # (F, 4), (4,)

    def load(self) -> None:
        """Load the weights and the embedder now rather than on the first check."""
        self._weights  # noqa: B018 - the cached property loads them
        self.embedder.load()

    def check(self, prompt: str, candidates: list[str], threshold: float | None = None) -> list[SentenceCheck]:
        """Read each sentence beside the prompt; kept: p(ok) reaches `self.threshold(threshold)`."""
        if not candidates:
            return []
        w, b = self._weights
        vectors = self.embedder.encode([prompt, *candidates])  # (1 + N, dim)
        logits = features(np.repeat(vectors[:1], len(candidates), axis=0), vectors[1:]) @ w + b  # (N, 4)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        least = self.threshold(threshold)
        checks = []
        for sentence, p in zip(candidates, probs.tolist(), strict=True):
            kept = p[0] >= least
            flaw = "ok" if kept else LABELS[1 + max(range(3), key=lambda i: p[1 + i])]
            checks.append(SentenceCheck(sentence=sentence, p_ok=round(p[0], 4), flaw=flaw, kept=kept))
        return checks

    def keep(
        self, prompt: str, text: str, threshold: float | None = None, head: str | None = None
    ) -> tuple[str, list[SentenceCheck]]:
        """`text` with only the sentences that pass beside `prompt`, and the checks of the dropped ones.

        `head`, a start of `text` kept as it is, defaults to the prompt when `text` starts with it (as the distilled
        rewriter's answers do); otherwise every sentence is checked. A sentence that repeats one kept before it (the
        same words) is dropped too, as "repeats".
        """
        if head is None:
            prefix = answer_prefix(prompt)
            head = prefix if " ".join(text.split()).lower().startswith(prefix.lower()) else ""
        kept, dropped, seen = [], [], set()
        for check in self.check(prompt, added_sentences(head, text), threshold):
            words = " ".join(re.findall(r"[a-z0-9]+", check.sentence.lower()))
            if check.kept and words in seen:
                check = check.model_copy(update={"kept": False, "flaw": "repeats"})
            (kept if check.kept else dropped).append(check)
            seen.add(words)
        return " ".join([head, *(c.sentence for c in kept)]).strip(), dropped
