"""Benchmark Stage 1's learned discriminator against the hand formula: held-out accuracy on the same pairs.

    .venv/bin/python bench/discriminator.py --runs runs/wan --runs runs/cogvideox
    .venv/bin/python bench/discriminator.py --runs runs/wan --splits 10 --val-fraction 0.3

The pairs are SSPO round 0's two Stage 1 branches per prompt, rendered with one noise seed and ranked by the
critics (`finetune/discriminator.py`). Each of `--splits` seeded splits by prompt trains the learned model on its
train half and scores both discriminators on the same held-out half; the table gives the mean and range.
The labels are only as good as the videos: on runs of the tiny random generators (noise videos) they are noise
and both accuracies hover around chance, so measure on runs of a real video model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from finetune.discriminator import train_discriminator
from graph_db.embeddings import Embedder
from rapo_common import RapoError


def main() -> None:
    """Train on `--splits` seeded splits and print both discriminators' held-out accuracy."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, action="append", required=True, help="Run dirs; repeatable.")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--val-fraction", type=float, default=0.3)
    parser.add_argument("--l2", type=float, default=0.01)
    args = parser.parse_args()

    embedder = Embedder()
    learned, hand, sizes = [], [], []
    with tempfile.TemporaryDirectory() as work:
        for seed in range(args.splits):
            try:
                report = train_discriminator(args.runs, Path(work) / str(seed), embedder, args.val_fraction, args.l2,
                                             seed=seed)  # fmt: skip
            except RapoError as exc:
                raise SystemExit(f"error: {exc}") from None
            if report.val_accuracy is None or report.hand_val_accuracy is None:
                continue
            learned.append(report.val_accuracy)
            hand.append(report.hand_val_accuracy)
            sizes.append((report.train, report.val))
    if not learned:
        raise SystemExit("no split had held-out pairs: add runs or raise --val-fraction")
    print(f"{report.pairs} pairs from {len(args.runs)} run(s), skipped {report.skipped}; {len(learned)} splits, "
          f"train/val {sizes[0][0]}/{sizes[0][1]}")  # fmt: skip
    print("| discriminator | held-out accuracy, mean | min | max |\n|---|---|---|---|")
    for name, values in (("learned (MiniLM features)", learned), ("hand formula", hand)):
        print(f"| {name} | {statistics.mean(values):.3f} | {min(values):.3f} | {max(values):.3f} |")


if __name__ == "__main__":
    main()
