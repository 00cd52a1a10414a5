"""Stage 1's discriminator: which of two rewrites to keep, by the hand formula or by a model learned from SSPO.

The hand formula is `similarity + 0.5 x length fit + 0.25 x modifiers kept`. A learned one is of two kinds, both
trained by `rapo finetune discriminator` (`finetune/discriminator.py`) on SSPO's round 0, where both Stage 1
branches are rendered with the same noise seed and the critics say which made the better video: the label the
paper trains its discriminator on.

- `logistic` (`LearnedDiscriminator`): a Bradley-Terry (pairwise logistic) model over MiniLM features of each
  candidate: its similarity to the prompt, its length fit, its length, whether it is the rapo branch, and its
  embedding minus the prompt's (384 numbers).
- `lora` (`LoraDiscriminator`): a PEFT LoRA adapter on a causal LM (SmolLM2-135M-Instruct by default) that reads the
  prompt and candidates A and B (`branch_compare` template) and answers "A" or "B"; a pair's margin is
  log P("A") - log P("B"), averaged over both orders so that a preference for a position cancels.

`LearnedDiscriminator.load(DIR)` reads either kind from `DIR/discriminator.json`; both score Stage 1's candidates
with `scores(prompt, entries, vectors, target, llm)`.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr

from rapo.common import ModelError
from rapo.prompts.loader import load_template
from rapo.tools.llm import ChatLLM, LocalLLM, default_llm_path, load_adapter

FILE = "discriminator.json"
SCALARS = ("similarity", "length_fit", "words_per_100", "rapo_branch")
TEMPLATE = "branch_compare"
LETTERS = ("A", "B")


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
    """Weights of the pairwise logistic model and what they were trained on; saved as `discriminator.json`."""

    kind: Literal["logistic"] = "logistic"
    weights: list[float] = Field(description="One per feature: SCALARS, then the embedding difference.")
    embedder: str = Field(description="The embedding model the features come from.")
    report: dict = Field(default_factory=dict, description="Pairs, split, accuracies, settings of the training run.")
    location: str = Field("", description="The folder it was loaded from.")

    def score(self, feature_vector: np.ndarray) -> float:
        """The candidate's strength: the one with the higher score is predicted to make the better video."""
        return float(np.asarray(self.weights, dtype=np.float32) @ feature_vector)

    def scores(
        self, prompt: str, entries: list[tuple[str, str]], vectors: np.ndarray, target: int, llm: ChatLLM | None = None
    ) -> list[float]:
        """Each candidate's strength; the highest is predicted to make the best video.

        Args:
            prompt: the user's prompt (unused here: the features carry it).
            entries: (branch, text) per candidate.
            vectors: normalised embeddings of the prompt then each candidate, (1 + C, dim).
            target: the target profile's preferred length, in words.
            llm: unused here (the LoRA kind's base model).
        """
        if len(self.weights) != len(SCALARS) + vectors.shape[1]:
            raise ModelError(
                f"--discriminator {self.location}: trained on {self.embedder} features of another size than the "
                f"embedder's ({len(self.weights) - len(SCALARS)} vs {vectors.shape[1]})"
            )
        return [
            self.score(features(vectors[0], vector, len(text.split()), target, branch))
            for (branch, text), vector in zip(entries, vectors[1:], strict=True)
        ]

    def save(self, folder: Path) -> None:
        """Write `discriminator.json` into `folder` (created if missing), atomically."""
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f"{FILE}.partial"
        partial.write_text(self.model_dump_json(exclude={"location"}, indent=1), encoding="utf-8")
        partial.replace(folder / FILE)

    @classmethod
    def load(cls, folder: str | Path) -> LearnedDiscriminator | LoraDiscriminator:
        """The discriminator saved in `folder`, of the kind it records; a ModelError that says what is wrong otherwise.

        A file written before kinds existed is a logistic one.
        """
        path = Path(folder).expanduser() / FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(
                f"--discriminator: {path} not found (write one with `rapo finetune discriminator`)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"--discriminator: {path} is unreadable ({exc})") from None
        data = {**data, "location": str(Path(folder).expanduser())}
        kind = data.setdefault("kind", "logistic")
        if kind == "lora":
            found = LoraDiscriminator.model_validate(data)
            if not (Path(found.location) / "adapter_config.json").is_file():
                raise ModelError(f"--discriminator {found.location}: a lora discriminator without its adapter files")
            if found.base and not (Path(found.base) / "config.json").is_file():
                raise ModelError(f"--discriminator {found.location}: its base model {found.base} is not a model folder")
            if found.template != load_template(TEMPLATE).id:
                raise ModelError(
                    f"--discriminator {found.location}: trained on the {found.template} template, but this rapo has "
                    f"{load_template(TEMPLATE).id}; train it again with `rapo finetune discriminator --kind lora`"
                )
            return found
        if kind != "logistic":
            raise ModelError(f"--discriminator: {path} has kind {kind!r}; this rapo knows 'logistic' and 'lora'")
        return cls.model_validate(data)


def compare_messages(prompt: str, a: str, b: str) -> list[dict[str, str]]:
    """The `branch_compare` chat that asks which of `a` (A) and `b` (B) will make the better video."""
    return load_template(TEMPLATE).messages(prompt=prompt, a=a, b=b)


def letter_ids(tokenizer) -> tuple[int, int]:  # noqa: ANN001 - transformers is imported lazily
    """The token ids of "A" and "B"; a ModelError when the tokenizer splits either."""
    ids = [tokenizer.encode(letter, add_special_tokens=False) for letter in LETTERS]
    if any(len(i) != 1 for i in ids):
        raise ModelError(f"the tokenizer splits the answer letters {LETTERS} into {ids}: use another base model")
    return ids[0][0], ids[1][0]


def letter_margins(tokenizer, model, chats: list[list[dict[str, str]]], batch_size: int = 8) -> list[float]:  # noqa: ANN001
    """The margin log P("A") - log P("B") of the next token after each chat (its answer); positive favours A."""
    import torch

    a_id, b_id = letter_ids(tokenizer)
    tokenizer.padding_side = "left"  # the last position of every row is its own last token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    margins: list[float] = []
    for start in range(0, len(chats), batch_size):
        inputs = tokenizer.apply_chat_template(
            chats[start : start + batch_size], add_generation_prompt=True, return_tensors="pt", return_dict=True,
            padding=True,
        )  # fmt: skip
        mask = inputs["attention_mask"]  # (B, T)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): as unpadded, so as in training
        with torch.inference_mode():
            logits = model(
                input_ids=inputs["input_ids"], attention_mask=mask, position_ids=positions, logits_to_keep=1
            ).logits  # (B, 1, V): only the next token is read
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1)  # (B, V)
        margins += (logp[:, a_id] - logp[:, b_id]).tolist()
    return margins


def pair_margins(tokenizer, model, pairs: list[tuple[str, str, str]]) -> list[float]:  # noqa: ANN001
    """For each (prompt, a, b): how much the model prefers `a`, averaged over both orders (A=a, then A=b)."""
    chats = [compare_messages(p, a, b) for p, a, b in pairs] + [compare_messages(p, b, a) for p, a, b in pairs]
    margins = letter_margins(tokenizer, model, chats)
    return [(m - n) / 2 for m, n in zip(margins[: len(pairs)], margins[len(pairs) :], strict=True)]


class LoraDiscriminator(BaseModel):
    """A LoRA adapter on a causal LM that says which of two candidates wins; saved in a folder beside the adapter."""

    kind: Literal["lora"] = "lora"
    base: str | None = Field(description="The base model folder; None is the default SmolLM2-135M-Instruct.")
    base_shape: dict[str, object] = Field(default_factory=dict, description="model_type and sizes of the base.")
    template: str = Field(description="The `branch_compare` template version it was trained on.")
    report: dict = Field(default_factory=dict, description="Pairs, split, accuracies, settings of the training run.")
    location: str = Field("", description="The folder it was loaded from (the adapter's folder).")
    _loaded: tuple | None = PrivateAttr(None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def base_path(self) -> Path:
        """The base model's folder (the default LLM is converted on first use)."""
        return Path(self.base) if self.base else default_llm_path()

    def scores(
        self, prompt: str, entries: list[tuple[str, str]], vectors: np.ndarray, target: int, llm: ChatLLM | None = None
    ) -> list[float]:
        """Each candidate's mean margin over every other (0 for a lone one); the highest wins.

        Args:
            prompt: the user's prompt.
            entries: (branch, text) per candidate.
            vectors: unused here (the logistic kind's features).
            target: unused here.
            llm: Stage 1's LLM, whose weights are reused when it is a local model of the same base.
        """
        n = len(entries)
        if n < 2:
            return [0.0] * n
        tokenizer, model = self.model(llm)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        margins = pair_margins(tokenizer, model, [(prompt, entries[i][1], entries[j][1]) for i, j in pairs])
        totals = [0.0] * n
        for (i, j), margin in zip(pairs, margins, strict=True):
            totals[i] += margin
            totals[j] -= margin
        return [t / (n - 1) for t in totals]

    def model(self, llm: ChatLLM | None = None):  # noqa: ANN201 - transformers is imported lazily
        """(tokenizer, base + adapter), loaded on first use and kept."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load(llm)
            return self._loaded

    def _load(self, llm: ChatLLM | None):  # noqa: ANN202
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base = self.base_path()
        plain = llm.plain() if isinstance(llm, LocalLLM) else None
        if isinstance(plain, LocalLLM) and (plain.path or default_llm_path()).resolve() == base.resolve():
            # Stage 1's LLM is this base: reuse its weights rather than load a second copy (0.5 GB for SmolLM2).
            # Its plain() model, because the main one has the distilled adapter merged in (and plain() is what the
            # SSPO reviser loads anyway). PEFT wraps the modules it is given in place, so the adapter goes on a copy
            # of the module tree that shares the weight tensors: the LLM keeps answering exactly as before, and
            # the adapter stays unmerged (merging would write into the shared weights).
            tokenizer, shared = plain._loaded  # its cached (tokenizer, model)
            tensors = [*shared.parameters(), *shared.buffers()]
            model = copy.deepcopy(shared, memo={id(t): t for t in tensors})
        else:
            try:
                tokenizer = AutoTokenizer.from_pretrained(base)
                model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
            except (OSError, ValueError) as exc:
                raise ModelError(f"--discriminator {self.location}: cannot load its base {base}: {exc}") from None
        return tokenizer, load_adapter(model, Path(self.location)).eval()

    def save(self, folder: Path) -> None:
        """Write `discriminator.json` into `folder`, which holds the adapter already."""
        partial = folder / f"{FILE}.partial"
        partial.write_text(self.model_dump_json(exclude={"location"}, indent=1), encoding="utf-8")
        partial.replace(folder / FILE)
