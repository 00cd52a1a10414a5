"""Benchmark Stage 3: LoRA on VBench short → long prompts (GPT-4o's `_longer` rewrites), base vs adapter.

Reads `../shared/data/benchmarks/vbench/prompts/all_dimension.txt` and its line-aligned rewrites in
`augmented_prompts/gpt_enhanced_prompts/all_dimension_longer.txt` (relative to the project root), splits them by
prompt (90% train, 10% val), trains a LoRA (r=8, q/k/v/o) on SmolLM2-135M-Instruct and evaluates base vs adapter on
the val split.

Full run (about 2.8 s a step on 2 idle cores, batch 4; evaluation about 10 s a pair for both models):
    .venv/bin/python bench/finetune.py --steps 300 --max-len 256 --work /tmp/bench-finetune

Quick trial:
    .venv/bin/python bench/finetune.py --steps 4 --eval-limit 2 --work /tmp/bench-finetune-trial

Writes `<work>/data` (the dataset), `<work>/adapter` (adapter and checkpoints), `<work>/eval.json` (every answer)
and `<work>/finetune.json` (all figures). A rerun with more --steps resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name hides the `finetune` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from rich.table import Table  # noqa: E402

from agent import console  # noqa: E402
from finetune.dataset import build_dataset  # noqa: E402
from finetune.evaluate import evaluate, table_rows, write_report  # noqa: E402
from finetune.train import TrainConfig, _last_checkpoint, train  # noqa: E402

VBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks" / "vbench" / "prompts"
SHORT = VBENCH / "all_dimension.txt"
LONG = VBENCH / "augmented_prompts" / "gpt_enhanced_prompts" / "all_dimension_longer.txt"


def main() -> None:
    """Build the dataset, train (or resume), evaluate, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-finetune"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--eval-limit", type=int, default=None, help="Evaluate only the first N val pairs.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-faithfulness", type=float, default=1.0, help="Drop pairs whose target drops words.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    console.quiet_libraries()

    # 1. Dataset: VBench short → long pairs, split by prompt
    data = args.work / "data"
    summary = build_dataset(
        data, pairs=(SHORT, LONG), val_fraction=0.1, seed=args.seed, min_faithfulness=args.min_faithfulness
    )
    print(f"dataset: {summary.counts['train']} train, {summary.counts['val']} val pairs ({summary.skipped})")

    # 2. Train (resuming when the adapter folder holds checkpoints)
    adapter = args.work / "adapter"
    config = TrainConfig(
        data=str(data), out=str(adapter), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        max_len=args.max_len, seed=args.seed, save_every=max(1, min(50, args.steps // 2)), threads=args.threads,
    )  # fmt: skip
    result = train(config, resume=_last_checkpoint(adapter / "checkpoints") is not None)
    print(
        f"train: {result.steps} steps ({result.examples} examples, batch {args.batch_size}, max len {args.max_len}), "
        f"loss {result.train_loss}, {result.seconds:.1f} s, {result.steps_per_second:.3f} steps/s "
        f"({1 / result.steps_per_second if result.steps_per_second else float('nan'):.2f} s/step)"
    )

    # 3. Evaluate base vs adapter on the val split
    report = evaluate(adapter, data, limit=args.eval_limit)
    write_report(report, args.work / "eval.json")
    table = Table(title=f"base vs adapter on {report.pairs} VBench val pairs ({report.seconds:.0f} s)")
    for column in ("model", "similarity", "ROUGE-L", "faithfulness", "words"):
        table.add_column(column)
    for row in table_rows(report):
        table.add_row(*row)
    console.out.print(table)
    figures = {"dataset": summary.model_dump(), "train": result.__dict__, "eval": report.means, "args": vars(args)}
    (args.work / "finetune.json").write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
