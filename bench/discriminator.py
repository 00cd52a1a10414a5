"""Benchmark Stage 1's learned discriminators against the hand formula: held-out accuracy on the same pairs.

    .venv/bin/python bench/discriminator.py --runs runs/wan --runs runs/cogvideox
    .venv/bin/python bench/discriminator.py --runs runs/wan --splits 10 --val-fraction 0.3 --kinds logistic
    .venv/bin/python bench/discriminator.py --runs runs/wan --lora-steps 200 --lora-base ~/models/Qwen2.5-0.5B-Instruct

The pairs are SSPO round 0's two Stage 1 branches per prompt, rendered with one noise seed and ranked by the
critics (`finetune/discriminator.py`). Each of `--splits` seeded splits by prompt trains each kind (`--kinds`: the
logistic model over MiniLM features, and a LoRA on the default LLM that answers A or B) on its train half and scores
it and the hand formula on the same held-out half; the table gives the mean and range. The LoRA kind trains for
`--lora-steps` per split: minutes each on a CPU.
The labels are only as good as the videos: on runs of the tiny random generators (noise videos) they are noise
and every accuracy hovers around chance, so measure on runs of a real video model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from finetune.discriminator import train_discriminator
from finetune.train import TrainConfig
from graph_db.embeddings import Embedder
from rapo_common import RapoError

NAMES = {"logistic": "logistic (MiniLM features)", "lora": "LoRA on the LLM (A or B)"}


def main() -> None:
    """Train each kind on `--splits` seeded splits and print its held-out accuracy beside the hand formula's."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, action="append", required=True, help="Run dirs; repeatable.")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--val-fraction", type=float, default=0.3)
    parser.add_argument("--kinds", default="logistic,lora", help="Comma-separated: logistic, lora.")
    parser.add_argument("--l2", type=float, default=0.01, help="logistic: L2 penalty.")
    parser.add_argument("--lora-steps", type=int, default=100, help="lora: optimizer steps per split.")
    parser.add_argument("--lora-lr", type=float, default=2e-4, help="lora: peak learning rate.")
    parser.add_argument("--lora-base", default=None, help="lora: base model folder (default: SmolLM2-135M).")
    parser.add_argument("--max-len", type=int, default=512, help="lora: tokens per pair order.")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not kinds or set(kinds) - set(NAMES):
        raise SystemExit(f"error: --kinds {args.kinds!r}: choose from {', '.join(NAMES)}")

    embedder = Embedder()
    lora = TrainConfig(base=args.lora_base, steps=args.lora_steps, lr=args.lora_lr, max_len=args.max_len)
    learned: dict[str, list[float]] = {k: [] for k in kinds}
    hand, sizes = [], []
    with tempfile.TemporaryDirectory() as work:
        for seed in range(args.splits):
            reports = {}
            for kind in kinds:
                try:
                    reports[kind] = train_discriminator(
                        args.runs, Path(work) / f"{kind}-{seed}", embedder, args.val_fraction, args.l2, seed=seed,
                        kind=kind, lora=lora,
                    )  # fmt: skip
                except RapoError as exc:
                    raise SystemExit(f"error: {exc}") from None
            report = reports[kinds[0]]  # every kind saw the same split: the split is by prompt and seed only
            if report.val_accuracy is None or report.hand_val_accuracy is None:
                continue
            for kind in kinds:
                learned[kind].append(reports[kind].val_accuracy)
            hand.append(report.hand_val_accuracy)
            sizes.append((report.train, report.val))
    if not hand:
        raise SystemExit("no split had held-out pairs: add runs or raise --val-fraction")
    print(f"{report.pairs} pairs from {len(args.runs)} run(s), skipped {report.skipped}; {len(hand)} splits, "
          f"train/val {sizes[0][0]}/{sizes[0][1]}")  # fmt: skip
    print("| discriminator | held-out accuracy, mean | min | max |\n|---|---|---|---|")
    for name, values in [*((NAMES[k], learned[k]) for k in kinds), ("hand formula", hand)]:
        print(f"| {name} | {statistics.mean(values):.3f} | {min(values):.3f} | {max(values):.3f} |")


if __name__ == "__main__":
    main()
