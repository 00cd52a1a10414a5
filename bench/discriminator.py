"""Benchmark Stage 1's learned discriminators against the hand formula: held-out accuracy on the same pairs.

    .venv/bin/python bench/discriminator.py --runs runs/wan --runs runs/cogvideox
    .venv/bin/python bench/discriminator.py --runs runs/wan --splits 10 --val-fraction 0.3 --kinds logistic
    .venv/bin/python bench/discriminator.py --runs runs/wan --lora-steps 200 --lora-base ~/models/Qwen2.5-0.5B-Instruct
    .venv/bin/python bench/discriminator.py --synthetic 48 --splits 1 --lora-steps 40 --lora-lr 1e-3

The pairs are SSPO round 0's two Stage 1 branches per prompt, rendered with one noise seed and ranked by the
critics (read by `agent/runs/training_pairs.py`, trained on by `finetune/discriminator.py`). Each of `--splits`
seeded splits by prompt trains each kind (`--kinds`: the logistic model over MiniLM features, and a LoRA on the
default LLM that answers A or B) on its train half and scores it and the hand formula on the same held-out half; the
table gives the mean and range. The LoRA kind trains for `--lora-steps` per split: minutes each on a CPU.
The labels are only as good as the videos: on runs of the tiny random generators (noise videos) they are noise
and every accuracy hovers around chance, so measure on runs of a real video model. `--synthetic N` instead writes a
run of N labelled round 0s where the shorter candidate always won and which branch is the shorter alternates: a rule
the hand formula gets backwards and a learner must read from the texts (a check that training works, not a figure
about videos).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

from rapo.agent.loop.state import Evaluation, ToolCall
from rapo.agent.runs.training_pairs import branch_pairs
from rapo.agent.runs.trajectory import TrajectoryStore
from rapo.common import RapoError
from rapo.finetune.discriminator import train_discriminator
from rapo.finetune.train import TrainConfig
from rapo.graph_db.embeddings import Embedder

NAMES = {"logistic": "logistic (MiniLM features)", "lora": "LoRA on the LLM (A or B)"}
NOUNS = ["cat", "dog", "car", "horse", "chef", "boat", "child", "bird", "train", "fox", "tractor", "surfer", "dancer",
         "kite", "bus", "deer", "robot", "girl", "farmer", "whale"]  # fmt: skip
ADJECTIVES = ["red", "old", "small", "white", "young", "black"]
LONG = [
    "moves through a wide open landscape while the camera glides beside it in warm evening light, dust drifting",
    "crosses a busy square at dusk as neon signs flicker on and the camera follows slowly from behind",
    "stands on a hill under a stormy sky, grass bending in the wind while clouds race across the frame",
]
SHORT = ["in a quiet street.", "at noon.", "by the sea.", "in the rain."]


def write_synthetic(run_dir: Path, n: int, seed: int = 0) -> None:
    """A run of `n` round 0s (at most 120): the shorter candidate won, the rapo branch is it every other prompt."""
    rng = random.Random(seed)
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    subjects = rng.sample([f"a {adjective} {noun}" for adjective in ADJECTIVES for noun in NOUNS], n)
    store.start_run("synthetic", {"stage1": {"target": "short"}}, subjects)
    for pid, subject in enumerate(subjects):
        long_text, short_text = (
            f"{subject.capitalize()} {rng.choice(LONG)}.",
            f"{subject.capitalize()} {rng.choice(SHORT)}",
        )
        rapo, naive = (short_text, long_text) if pid % 2 else (long_text, short_text)
        rapo_score, naive_score = (0.7, 0.3) if pid % 2 else (0.3, 0.7)
        evaluations = [
            Evaluation(iteration=0, index=0, prompt=rapo, scores={"temporal": rapo_score}),
            Evaluation(iteration=0, index=1, prompt=naive, scores={"temporal": naive_score}),
        ]
        call = ToolCall(tool="refine_prompt", args={}, summary=f"rapo: {rapo}", seconds=0.0)
        store.record("synthetic", pid, evaluations, [(0, call)])
        store.finish("synthetic", pid, evaluations[0 if pid % 2 else 1], "budget")
    store.close()


def main() -> None:
    """Train each kind on `--splits` seeded splits and print its held-out accuracy beside the hand formula's."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, action="append", default=[], help="Run dirs; repeatable.")
    parser.add_argument("--synthetic", type=int, default=0, help="Add a written run of N round 0s (see above).")
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
    if not args.runs and not args.synthetic:
        raise SystemExit("error: pass --runs RUN_DIR (repeatable) or --synthetic N")
    if not 0 <= args.synthetic <= len(NOUNS) * len(ADJECTIVES):
        raise SystemExit(f"error: --synthetic {args.synthetic}: at most {len(NOUNS) * len(ADJECTIVES)}")

    embedder = Embedder()
    lora = TrainConfig(base=args.lora_base, steps=args.lora_steps, lr=args.lora_lr, max_len=args.max_len)
    learned: dict[str, list[float]] = {k: [] for k in kinds}
    hand, sizes = [], []
    with tempfile.TemporaryDirectory() as work:
        if args.synthetic:
            write_synthetic(Path(work) / "synthetic", args.synthetic)
            args.runs.append(Path(work) / "synthetic")
        try:
            found = branch_pairs(args.runs)  # read once: every split and kind trains on these pairs
        except RapoError as exc:
            raise SystemExit(f"error: {exc}") from None
        for seed in range(args.splits):
            reports = {}
            for kind in kinds:
                try:
                    reports[kind] = train_discriminator(
                        found, Path(work) / f"{kind}-{seed}", embedder, args.val_fraction, args.l2, seed=seed,
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
