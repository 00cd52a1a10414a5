"""Stage 1's learned discriminator: (prompt, rapo branch, naive branch, which won in SSPO's round 0) → a model.

    rapo finetune discriminator --runs runs/wan --runs runs/cogvideox --out discriminators/mine
    rapo refine --discriminator discriminators/mine "a dog running on the beach"

Round 0 of `rapo optimize` renders both Stage 1 branches with the same noise seed, and the critics rank them: the
better-ranked one (mean rank over the metrics, as SSPO selects) is the label. The model is the pairwise logistic
(Bradley-Terry) model of `tools/discriminator.py` over MiniLM features, fitted by full-batch gradient descent with
an L2 penalty; the split is by prompt. The report compares its held-out accuracy with the hand formula's on the same
pairs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from agent.loop.selection import mean_ranks
from agent.runs.trajectory import open_run_dir
from finetune.dataset import assign_splits
from graph_db.embeddings import Embedder
from rapo_common import RapoError
from tools.discriminator import LearnedDiscriminator, features, hand_score, length_fit
from tools.profiles import profile

_BRANCH = re.compile(r"^(rapo|naive): ")


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


def branch_pairs(run_dirs: list[Path], skipped: dict[str, int]) -> list[BranchPair]:
    """One pair per prompt whose round 0 rendered and scored two different candidates with a clear winner."""
    pairs = []
    for run_dir in run_dirs:
        store, run_id = open_run_dir(run_dir)
        try:
            config = store.run_config(run_id) or {}
            target = profile(str((config.get("stage1") or {}).get("target") or "wan")).target_words
            for row in store.prompts(run_id):
                if row.status != "done":
                    skipped[f"status {row.status}"] = skipped.get(f"status {row.status}", 0) + 1
                    continue
                first = [e for e in store.evaluations(run_id, row.prompt_id) if e.iteration == 0 and e.scores]
                ranks = mean_ranks(first[:2])
                why = (
                    "round 0 did not score two branches"
                    if len(first) < 2 or first[0].prompt == first[1].prompt
                    else ("a tie" if ranks[0] == ranks[1] else None)
                )
                if why:
                    skipped[why] = skipped.get(why, 0) + 1
                    continue
                calls = store.tool_calls(run_id, row.prompt_id)
                chosen = next((c.summary for c in calls if c.tool == "refine_prompt"), "")
                found = _BRANCH.match(chosen or "")
                branch_a = found[1] if found else "unknown"
                branch_b = {"rapo": "naive", "naive": "rapo"}.get(branch_a, "unknown")
                pairs.append(BranchPair(
                    input=row.input, a=first[0].prompt, b=first[1].prompt, branch_a=branch_a, branch_b=branch_b,
                    winner=int(ranks[1] < ranks[0]), target_words=target,
                    source={"run_dir": str(run_dir), "run_id": run_id, "prompt_id": row.prompt_id,
                            "scores": [first[0].scores, first[1].scores]},
                ))  # fmt: skip
        finally:
            store.close()
    return pairs


class DiscriminatorReport(BaseModel):
    """What `train_discriminator` did and how well each discriminator predicts the held-out winners."""

    pairs: int
    train: int
    val: int
    skipped: dict[str, int]
    val_accuracy: float | None = Field(description="The learned model's, on the val pairs; None without any.")
    hand_val_accuracy: float | None = Field(description="The hand formula's on the same pairs.")
    train_accuracy: float
    l2: float
    steps: int
    seed: int
    runs: list[str]


def train_discriminator(
    run_dirs: list[Path],
    out: Path,
    embedder: Embedder | None = None,
    val_fraction: float = 0.2,
    l2: float = 0.01,
    steps: int = 2000,
    lr: float = 0.5,
    seed: int = 0,
) -> DiscriminatorReport:
    """Build the pairs, fit the model on the train split, score both discriminators on val, save to `out`."""
    # 1. Pairs, split by prompt
    skipped: dict[str, int] = {}
    pairs = assign_splits(branch_pairs(run_dirs, skipped), val_fraction, seed)
    train = [p for p in pairs if p.split == "train"]
    if not train:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items()) or "no prompts"
        raise RapoError(f"no branch pairs to learn from in {', '.join(map(str, run_dirs))} ({reasons})")
    val = [p for p in pairs if p.split == "val"]

    # 2. Features: each pair as the difference of its candidates' feature vectors
    embedder = embedder or Embedder()
    texts = sorted({t for p in pairs for t in (p.input, p.a, p.b)})
    vectors = dict(zip(texts, embedder.encode(texts), strict=True))

    def candidate(p: BranchPair, which: int) -> np.ndarray:
        text, branch = (p.a, p.branch_a) if which == 0 else (p.b, p.branch_b)
        return features(vectors[p.input], vectors[text], len(text.split()), p.target_words, branch)

    def design(batch: list[BranchPair]) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([candidate(p, 0) - candidate(p, 1) for p in batch])  # (N, F): a minus b
        return x, np.array([1.0 - p.winner for p in batch])  # (N,): 1 when a won

    # 3. Fit: logistic loss on a - b, no bias (the model is symmetric), L2 penalty, full-batch gradient descent
    x, y = design(train)
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        w -= lr * (x.T @ (p - y) / len(y) + l2 * w)

    # 4. Held-out accuracy of both discriminators on the same pairs
    def learned_accuracy(batch: list[BranchPair]) -> float | None:
        if not batch:
            return None
        xb, yb = design(batch)
        return float(np.mean(((xb @ w) > 0) == (yb > 0.5)))

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

    report = DiscriminatorReport(
        pairs=len(pairs), train=len(train), val=len(val), skipped=skipped, val_accuracy=learned_accuracy(val),
        hand_val_accuracy=hand_accuracy(val), train_accuracy=learned_accuracy(train) or 0.0, l2=l2, steps=steps,
        seed=seed, runs=[str(r) for r in run_dirs],
    )  # fmt: skip
    LearnedDiscriminator(weights=[round(float(v), 6) for v in w], embedder=embedder.model_id,
                         report=report.model_dump()).save(out)  # fmt: skip
    return report
