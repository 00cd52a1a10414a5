"""Stage 1's discriminator: which of two rewrites to keep, by the hand formula or by a model learned from SSPO.

The hand formula is `similarity + 0.5 x length fit + 0.25 x modifiers kept`. The learned one is a Bradley-Terry
(pairwise logistic) model over MiniLM features of each candidate: its similarity to the prompt, its length fit, its
length, whether it is the rapo branch, and its embedding minus the prompt's (384 numbers). It is trained by
`rapo finetune discriminator` (`finetune/discriminator.py`) on SSPO's round 0, where both Stage 1 branches are
rendered with the same noise seed and the critics say which made the better video: the label the paper trains its
discriminator on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from rapo_common import ModelError

FILE = "discriminator.json"
SCALARS = ("similarity", "length_fit", "words_per_100", "rapo_branch")


def length_fit(words: int, target: int) -> float:
    """min(words, target) / max(words, target): 1 at the target length."""
    return min(words, target) / max(words, target, 1)


def hand_score(similarity: float, fit: float, coverage: float) -> float:
    """The hand formula: meaning kept, caption-like length, merged modifiers present."""
    return similarity + 0.5 * fit + 0.25 * coverage


def features(prompt_vector: np.ndarray, vector: np.ndarray, words: int, target: int, branch: str) -> np.ndarray:
    """A candidate's features for the learned model: the SCALARS, then its embedding minus the prompt's.

    Args:
        prompt_vector: the prompt's normalised MiniLM embedding, (dim,).
        vector: the candidate's, (dim,).
        words: the candidate's word count.
        target: the target profile's preferred length, in words.
        branch: "rapo" or "naive".
    """
    scalars = [float(vector @ prompt_vector), length_fit(words, target), words / 100, float(branch == "rapo")]
    return np.concatenate([np.array(scalars, dtype=np.float32), (vector - prompt_vector).astype(np.float32)])


class LearnedDiscriminator(BaseModel):
    """Weights of the pairwise model and what they were trained on; saved as `discriminator.json` in a folder."""

    weights: list[float] = Field(description="One per feature: SCALARS, then the embedding difference.")
    embedder: str = Field(description="The embedding model the features come from.")
    report: dict = Field(default_factory=dict, description="Pairs, split, accuracies, settings of the training run.")
    location: str = Field("", description="The folder it was loaded from.")

    def score(self, feature_vector: np.ndarray) -> float:
        """The candidate's strength: the one with the higher score is predicted to make the better video."""
        return float(np.asarray(self.weights, dtype=np.float32) @ feature_vector)

    def save(self, folder: Path) -> None:
        """Write `discriminator.json` into `folder` (created if missing), atomically."""
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f"{FILE}.partial"
        partial.write_text(self.model_dump_json(exclude={"location"}, indent=1), encoding="utf-8")
        partial.replace(folder / FILE)

    @classmethod
    def load(cls, folder: str | Path) -> LearnedDiscriminator:
        """The discriminator saved in `folder`; a ModelError that says what is wrong otherwise."""
        path = Path(folder).expanduser() / FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(
                f"--discriminator: {path} not found (write one with `rapo finetune discriminator`)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"--discriminator: {path} is unreadable ({exc})") from None
        return cls.model_validate({**data, "location": str(Path(folder).expanduser())})
