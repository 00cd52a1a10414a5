"""Trajectories (or line-aligned short/long prompt files) → supervised (user prompt → better prompt) pairs.

The runs are read by `agent/runs/training_pairs.py` (`pairs_from_runs`): finetune never imports agent.

A dataset is a folder with `train.jsonl`, `val.jsonl` (one `Pair` per line) and `dataset.json` (what was
read, what was kept, what was skipped and why). The split is by user prompt: the same prompt never lands in
both halves, whichever run it came from.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from rapo.common import InputFileError, RapoError, read_lines
from rapo.tools import guards

Split = Literal["train", "val"]
SPLITS: tuple[Split, ...] = ("train", "val")


class Pair(BaseModel):
    """One supervised example and where it came from."""

    input: str = Field(min_length=1, description="The user's prompt.")
    target: str = Field(min_length=1, description="The prompt the model should learn to write.")
    details: list[str] = Field(default_factory=list, description="Phrases the request asks to weave in.")
    split: Split = "train"
    gain: float | None = Field(None, description="Mean score of the best candidate minus the first one's.")
    source: dict[str, object] = Field(default_factory=dict, description="Provenance: run dir, run id, prompt id…")


class RunPairs(BaseModel):
    """The pairs `agent/runs/training_pairs.py` read from logged runs, for `build_dataset`."""

    runs: list[str] = Field(description="The run dirs read.")
    margin: float = Field(description="Least gain in mean score a kept pair has.")
    pairs: list[Pair]
    skipped: dict[str, int] = Field(description="Candidates left out, by reason.")


class DatasetSummary(BaseModel):
    """What `build_dataset` wrote; saved as `dataset.json` beside the pairs."""

    out: str
    sources: list[str]
    margin: float | None
    val_fraction: float
    seed: int
    counts: dict[str, int] = Field(description="Pairs per split.")
    min_faithfulness: float = Field(1.0, description="Least share of the input's content words a target keeps.")
    skipped: dict[str, int] = Field(description="Candidates left out, by reason.")


def mean_score(scores: dict[str, float] | None) -> float | None:
    """The unweighted mean of a candidate's metric scores, or None when it has none."""
    values = [float(v) for v in (scores or {}).values() if v is not None and not math.isnan(float(v))]
    return sum(values) / len(values) if values else None


def norm(text: str) -> str:
    """`text` with case and spacing ignored: how prompts are compared."""
    return " ".join(text.lower().split())


def skip(skipped: dict[str, int], reason: str) -> None:
    """Count one candidate left out for `reason`."""
    skipped[reason] = skipped.get(reason, 0) + 1


def pairs_from_files(short: Path, long: Path, skipped: dict[str, int]) -> list[Pair]:
    """Line-aligned (short prompt, long prompt) files, such as VBench's prompts and their GPT-4o rewrites."""
    shorts, longs = list(read_lines(short)), list(read_lines(long))
    # A file without a final newline has one line fewer by `wc -l` but the same count here.
    if len(shorts) != len(longs):
        raise InputFileError(f"--pairs: {short} has {len(shorts)} lines but {long} has {len(longs)}; they must align")
    pairs = []
    for (number, s), (_, t) in zip(shorts, longs, strict=True):
        if not s.strip() or not t.strip():
            skip(skipped, "blank line")
            continue
        pairs.append(
            Pair(input=s.strip(), target=t.strip(), source={"short": str(short), "long": str(long), "line": number})
        )
    return pairs


def drop_unfaithful(pairs: list[Pair], least: float, skipped: dict[str, int]) -> list[Pair]:
    """The pairs whose target keeps at least `least` of the input's content words (guards.faithfulness).

    A rewriter learns what its targets do: GPT-4o's VBench rewrites keep 0.82 of the input's content words on
    average, and a model trained on all of them learns to drop the user's words.
    """
    kept = [p for p in pairs if guards.faithfulness(p.input, p.target) >= least]
    for _ in range(len(pairs) - len(kept)):
        skip(skipped, "target drops input words")
    return kept


def dedupe(pairs: list[Pair], skipped: dict[str, int]) -> list[Pair]:
    """One pair per user prompt (case and spacing ignored): the largest gain wins, then the first seen."""
    best: dict[str, Pair] = {}
    for pair in pairs:
        key = norm(pair.input)
        kept = best.get(key)
        if kept is None:
            best[key] = pair
            continue
        skip(skipped, "duplicate prompt")
        if (pair.gain or 0.0) > (kept.gain or 0.0):
            best[key] = pair
    return list(best.values())


def assign_splits(pairs: list[Pair], val_fraction: float, seed: int, group: Callable[[str], str] = norm) -> list[Pair]:
    """Split by prompt group: order groups by a seeded hash and send the first `ceil(n * val_fraction)` to val.

    `group` maps a prompt to its group (by default the prompt itself, case and spacing ignored); prompts of one
    group land on one side, so near-duplicates ("a cat", "a cat, in Van Gogh style") never straddle the split.
    With two or more groups and a positive fraction, val gets at least one and train keeps at least one.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise RapoError(f"`val_fraction` must be in [0, 1), got {val_fraction}")
    groups = sorted({group(p.input) for p in pairs}, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    n_val = min(math.ceil(len(groups) * val_fraction - 1e-9), max(len(groups) - 1, 0))
    val = set(groups[:n_val])
    return [p.model_copy(update={"split": "val" if group(p.input) in val else "train"}) for p in pairs]


def build_dataset(
    out: Path,
    found: RunPairs | None = None,
    pairs: tuple[Path, Path] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    min_faithfulness: float = 1.0,
) -> DatasetSummary:
    """Write `out/train.jsonl`, `out/val.jsonl` and `out/dataset.json`; raises RapoError when no pair survives.

    `found` is what `agent.runs.training_pairs.pairs_from_runs` read from run dirs; `pairs` the short/long files.
    """
    # 1. Check inputs
    runs = found.runs if found else []
    if not runs and not pairs:
        raise RapoError("give --runs RUN_DIR... and/or --pairs SHORT_FILE LONG_FILE")

    # 2. Read, filter, dedupe, split
    skipped = dict(found.skipped) if found else {}
    read = list(found.pairs) if found else []
    if pairs:
        read += pairs_from_files(pairs[0], pairs[1], skipped)
    kept = assign_splits(dedupe(drop_unfaithful(read, min_faithfulness, skipped), skipped), val_fraction, seed)
    if not kept:
        raise RapoError(f"no training pairs: every candidate was left out ({skipped or 'the inputs are empty'})")

    # 3. Write atomically: a folder that exists is a finished dataset
    sources = runs + ([str(pairs[0]), str(pairs[1])] if pairs else [])
    margin = found.margin if found and runs else None
    summary = DatasetSummary(
        out=str(out), sources=sources, margin=margin, val_fraction=val_fraction, seed=seed,
        min_faithfulness=min_faithfulness,
        counts={s: sum(p.split == s for p in kept) for s in SPLITS}, skipped=skipped,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        partial = out / f"{split}.jsonl.partial"
        partial.write_text("".join(p.model_dump_json() + "\n" for p in kept if p.split == split), encoding="utf-8")
        partial.replace(out / f"{split}.jsonl")
    (out / "dataset.json").write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    return summary


def read_pairs(data: Path, split: Split) -> list[Pair]:
    """The pairs of one split of a dataset folder; a RapoError naming the file and line for anything unreadable."""
    path = data / f"{split}.jsonl"
    if not data.is_dir():
        raise InputFileError(f"not a dataset folder: {data} (make one with `rapo finetune dataset`)")
    pairs = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            pairs.append(Pair.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            reason = str(exc).splitlines()[0]
            raise InputFileError(f"{path}:{number}: not a training pair ({reason})") from None
    if not pairs:
        raise InputFileError(f"{path}: no pairs in the {split} split")
    return pairs
