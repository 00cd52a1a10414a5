"""Stage 1's learned discriminator: (prompt, rapo branch, naive branch, which won in SSPO's round 0) → a model.

    rapo finetune discriminator --runs runs/wan --runs runs/cogvideox --out discriminators/mine
    rapo finetune discriminator --runs runs/wan --kind lora --steps 200 --out discriminators/mine-lora
    rapo refine --discriminator discriminators/mine "a dog running on the beach"

Round 0 of `rapo optimize` renders both Stage 1 branches with the same noise seed, and the critics rank them: the
better-ranked one (mean rank over the metrics, as SSPO selects) is the label; `agent/runs/training_pairs.py` reads
those pairs from the run dirs (finetune never imports agent). The split is by prompt. Two kinds of model
(`tools/discriminator.py`):

- `logistic` (default): the pairwise logistic (Bradley-Terry) model over MiniLM features, fitted by full-batch
  gradient descent with an L2 penalty.
- `lora`: a PEFT LoRA adapter on the default LLM (or `--base`), trained with `finetune/train.py`'s loader and
  Trainer so that the next token after the `branch_compare` chat (the prompt, candidates A and B) is the winner's
  letter; each pair is shown in both orders, so a preference for a position cancels.

The report compares the model's held-out accuracy with the hand formula's on the same pairs.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from rapo.common import RapoError
from rapo.finetune.dataset import assign_splits
from rapo.finetune.train import TrainConfig, fit, lora_model, resolve_base, shape_of
from rapo.graph_db.embeddings import Embedder
from rapo.prompts.loader import load_template
from rapo.tools.discriminator import (
    TEMPLATE,
    LearnedDiscriminator,
    LoraDiscriminator,
    compare_messages,
    features,
    hand_score,
    length_fit,
    letter_ids,
    pair_margins,
)


class BranchPair(BaseModel):
    """Stage 1's two branches for one prompt, and which made the better video."""

    input: str
    a: str = Field(description="Stage 1's choice (round 0, candidate 0).")
    b: str = Field(description="The other branch (round 0, candidate 1).")
    branch_a: str
    branch_b: str
    winner: int = Field(description="0 when `a` made the better video, 1 when `b` did.")
    target_words: int = Field(description="The target profile's preferred length in that run.")
    split: str = "train"
    source: dict[str, object] = Field(default_factory=dict)


class RunBranchPairs(BaseModel):
    """The branch pairs `agent/runs/training_pairs.py` read from logged runs, for `train_discriminator`."""

    runs: list[str] = Field(description="The run dirs read.")
    pairs: list[BranchPair]
    skipped: dict[str, int] = Field(description="Prompts left out, by reason.")


class DiscriminatorReport(BaseModel):
    """What `train_discriminator` did and how well each discriminator predicts the held-out winners."""

    kind: Literal["logistic", "lora"] = "logistic"
    pairs: int
    train: int
    val: int
    skipped: dict[str, int]
    val_accuracy: float | None = Field(description="The learned model's, on the val pairs; None without any.")
    hand_val_accuracy: float | None = Field(description="The hand formula's on the same pairs.")
    train_accuracy: float
    l2: float | None = Field(description="The logistic kind's L2 penalty; None for lora.")
    steps: int = Field(description="Gradient steps (logistic: full-batch; lora: optimizer steps).")
    seed: int
    runs: list[str]
    lora: dict[str, object] | None = Field(
        None, description="The lora kind's training config, examples (pair orders within --max-len) and loss."
    )


def train_discriminator(
    found: RunBranchPairs,
    out: Path,
    embedder: Embedder | None = None,
    val_fraction: float = 0.2,
    l2: float = 0.01,
    steps: int = 2000,
    lr: float = 0.5,
    seed: int = 0,
    kind: Literal["logistic", "lora"] = "logistic",
    lora: TrainConfig | None = None,
) -> DiscriminatorReport:
    """Split the pairs, fit the model on the train split, score both discriminators on val, save to `out`.

    `found` is what `agent.runs.training_pairs.branch_pairs` read from run dirs.

    `steps`, `lr` and `l2` are the logistic kind's; the lora kind takes its settings from `lora` (base, steps,
    batch size, learning rate, rank, max_len; `seed` is its seed too), 100 steps of 4 pair orders of up to 512
    tokens without one.
    """
    # 1. Pairs, split by prompt
    skipped = dict(found.skipped)
    pairs = assign_splits(found.pairs, val_fraction, seed)
    train = [p for p in pairs if p.split == "train"]
    if not train:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items()) or "no prompts"
        raise RapoError(f"no branch pairs to learn from in {', '.join(found.runs)} ({reasons})")
    val = [p for p in pairs if p.split == "val"]

    # 2. MiniLM vectors: the hand formula's inputs and the logistic model's features
    embedder = embedder or Embedder()
    texts = sorted({t for p in pairs for t in (p.input, p.a, p.b)})
    vectors = dict(zip(texts, embedder.encode(texts), strict=True))

    def hand_accuracy(batch: list[BranchPair]) -> float | None:
        if not batch:
            return None
        right = 0
        for p in batch:
            scores = [
                hand_score(float(vectors[t] @ vectors[p.input]), length_fit(len(t.split()), p.target_words), 0.0)
                for t in (p.a, p.b)
            ]
            right += int(scores[0] >= scores[1]) == 1 - p.winner
        return right / len(batch)

    if kind == "lora":
        lora = lora or TrainConfig(steps=100, max_len=512)  # `rapo finetune discriminator --kind lora`'s defaults
        return _train_lora(pairs, train, val, out, lora, seed, hand_accuracy(val), skipped, found.runs)

    # 3. Logistic features: each pair as the difference of its candidates' feature vectors
    def candidate(p: BranchPair, which: int) -> np.ndarray:
        text, branch = (p.a, p.branch_a) if which == 0 else (p.b, p.branch_b)
        return features(vectors[p.input], vectors[text], len(text.split()), p.target_words, branch)

    def design(batch: list[BranchPair]) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([candidate(p, 0) - candidate(p, 1) for p in batch])  # (N, F): a minus b
        return x, np.array([1.0 - p.winner for p in batch])  # (N,): 1 when a won

    # 4. Fit: logistic loss on a - b, no bias (the model is symmetric), L2 penalty, full-batch gradient descent
    x, y = design(train)
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        w -= lr * (x.T @ (p - y) / len(y) + l2 * w)

    # 5. Held-out accuracy of both discriminators on the same pairs
    def learned_accuracy(batch: list[BranchPair]) -> float | None:
        if not batch:
            return None
        xb, yb = design(batch)
        return float(np.mean(((xb @ w) > 0) == (yb > 0.5)))

    report = DiscriminatorReport(
        pairs=len(pairs), train=len(train), val=len(val), skipped=skipped, val_accuracy=learned_accuracy(val),
        hand_val_accuracy=hand_accuracy(val), train_accuracy=learned_accuracy(train) or 0.0, l2=l2, steps=steps,
        seed=seed, runs=list(found.runs),
    )  # fmt: skip
    LearnedDiscriminator(weights=[round(float(v), 6) for v in w], embedder=embedder.model_id,
                         report=report.model_dump()).save(out)  # fmt: skip
    return report


def _train_lora(
    pairs: list[BranchPair],
    train: list[BranchPair],
    val: list[BranchPair],
    out: Path,
    config: TrainConfig,
    seed: int,
    hand_val_accuracy: float | None,
    skipped: dict[str, int],
    runs: list[str],
) -> DiscriminatorReport:
    """Fit a LoRA adapter so that the next token after `branch_compare` is the winner's letter; save it to `out`."""
    # 1. Load the base with LoRA (finetune/train.py's loader: float32, seeded)
    config = TrainConfig(**{**asdict(config), "out": str(out), "seed": seed, "template": TEMPLATE})
    base = resolve_base(config.base)
    tokenizer, model = lora_model(base, config)

    # 2. Tokenize: both orders of every train pair; the loss is on the answer letter only
    examples = [x for p in train for x in _examples(p, tokenizer, config.max_len)]
    if not examples:
        raise RapoError(f"no train pair fits in --max-len {config.max_len} tokens")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    # 3. Train: the Trainer of `rapo finetune train`, without checkpoints (a run is minutes, not hours)
    started = time.perf_counter()
    output = fit(model, examples, pad_id, config, checkpoints=None)
    seconds = time.perf_counter() - started

    # 4. Held-out accuracy: the margin, averaged over both orders, says which of a and b wins
    model.eval()

    def accuracy(batch: list[BranchPair]) -> float | None:
        if not batch:
            return None
        margins = pair_margins(tokenizer, model, [(p.input, p.a, p.b) for p in batch])
        return sum((m > 0) == (p.winner == 0) for m, p in zip(margins, batch, strict=True)) / len(batch)

    # 5. Save the adapter and discriminator.json (kind "lora"); the default base as None: its path is per machine
    recorded = None if config.base is None else str(base)
    report = DiscriminatorReport(
        kind="lora", pairs=len(pairs), train=len(train), val=len(val), skipped=skipped, val_accuracy=accuracy(val),
        hand_val_accuracy=hand_val_accuracy, train_accuracy=accuracy(train) or 0.0, l2=None,
        steps=output.global_step, seed=seed, runs=list(runs),
        lora={**asdict(config), "base": recorded, "examples": len(examples),
              "train_loss": round(output.training_loss, 4), "seconds": round(seconds, 2)},
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    LoraDiscriminator(base=recorded, base_shape=shape_of(model.config.to_dict()), template=load_template(TEMPLATE).id,
                      report=report.model_dump()).save(out)  # fmt: skip
    return report


def _examples(pair: BranchPair, tokenizer, max_len: int) -> list[dict[str, list[int]]]:  # noqa: ANN001
    """The pair in both orders as chat ids + the winner's letter, labels on the letter only; none over `max_len`."""
    letters = letter_ids(tokenizer)
    examples = []
    for first, second, answer in ((pair.a, pair.b, letters[pair.winner]), (pair.b, pair.a, letters[1 - pair.winner])):
        ids = tokenizer.apply_chat_template(
            compare_messages(pair.input, first, second), add_generation_prompt=True, tokenize=True
        )
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # newer transformers return a BatchEncoding
        if len(ids) + 1 <= max_len:
            examples.append({"input_ids": ids + [answer], "labels": [-100] * len(ids) + [answer]})  # (T,) each
    return examples
