"""The benchmarks' prompts with their reference rewrites, and the fixed dev split that no training may see.

Under `../shared/data/benchmarks` relative to the project root (all Apache-2.0):
- `vbench`: `all_dimension.txt` with GPT-4o's, Wan2.1's extender's and HunyuanVideo's line-aligned rewrites. Dev is
  the held-out group split of `rapo.finetune.default_adapter` (the shipped adapter never trained on it).
- `vbench2`: VBench-2.0's 1,012 prompts with the authors' rewrites (used for HunyuanVideo, CogVideoX and Kling) and
  Wan's. Dev is a seeded 15% of the prompt groups.
- `videophy`: VideoPhy's 344 physics captions with VideoREPA's detailed versions. Dev is a seeded 15% of the groups.

`bench/judge.py` measures on the dev prompts; every training set built from these files must keep to `train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from rapo.finetune.dataset import Pair, assign_splits
from rapo.finetune.default_adapter import VBENCH, group_of, split_pairs

BENCHMARKS = VBENCH.parents[1]
Bench = Literal["vbench", "vbench2", "videophy"]
DEV_FRACTION = 0.15
DEV_SEED = 2026  # changing it would move dev prompts into training: never do

VBENCH_REFERENCES = {
    "GPT-4o (VBench)": "augmented_prompts/gpt_enhanced_prompts/all_dimension_longer.txt",
    "Wan2.1 extender (VBench)": "augmented_prompts/Wan2.1-T2V-1.3B/all_dimension_aug_wanx_seed42.txt",
    "HunyuanVideo rewrite (VBench)": "augmented_prompts/hunyuan_all_dimension.txt",
}
VBENCH2_REFERENCES = {
    "VBench-2.0 rewrite": "prompt_aug/VBench2_full_text_aug.txt",
    "Wan2.1 extender (VBench-2.0)": "prompt_aug/Wanx_full_text_aug.txt",
}
VIDEOPHY_REFERENCES = {"VideoPhy detailed": "videophy_detailed.txt"}


class BenchPrompt(BaseModel):
    """One benchmark prompt, where it is, its reference rewrites by name, and its split."""

    bench: Bench
    line: int = Field(description="1-based line of the prompt file.")
    prompt: str
    references: dict[str, str] = Field(description="Reference rewrite by the rewriter's name.")
    split: Literal["train", "dev"]

    @property
    def key(self) -> str:
        """`bench:line`, the prompt's id across files."""
        return f"{self.bench}:{self.line}"


def _aligned(prompts: Path, references: dict[str, Path]) -> list[tuple[int, str, dict[str, str]]]:
    """(line, prompt, references) of line-aligned files; a reference line that is empty is left out."""
    rows = [line.strip() for line in prompts.read_text(encoding="utf-8").splitlines()]
    refs = {name: path.read_text(encoding="utf-8").splitlines() for name, path in references.items()}
    out = []
    for i, prompt in enumerate(rows):
        if prompt:
            mine = {n: lines[i].strip() for n, lines in refs.items() if i < len(lines) and lines[i].strip()}
            out.append((i + 1, prompt, mine))
    return out


def _split(rows: list[tuple[int, str, dict[str, str]]]) -> dict[int, str]:
    """Line -> "dev" or "train", by prompt group in a seeded order (`rapo.finetune.dataset.assign_splits`)."""
    pairs = [Pair(input=p, target=p, source={"line": line}) for line, p, _ in rows]
    split = assign_splits(pairs, DEV_FRACTION, seed=DEV_SEED, group=group_of)
    return {int(p.source["line"]): "dev" if p.split == "val" else "train" for p in split}


def load(bench: Bench, root: Path = BENCHMARKS) -> list[BenchPrompt]:
    """Every prompt of `bench` with its references and split, in file order."""
    if bench == "vbench":
        folder = root / "vbench" / "prompts"
        rows = _aligned(folder / "all_dimension.txt", {n: folder / f for n, f in VBENCH_REFERENCES.items()})
        held_out = {
            int(p.source["line"])
            for p in split_pairs(folder)
            if p.split == "val" and Path(str(p.source["short"])).name == "all_dimension.txt"
        }
        splits = {line: "dev" if line in held_out else "train" for line, _, _ in rows}
    elif bench == "vbench2":
        folder = root / "vbench2" / "prompts"
        rows = _aligned(folder / "VBench2_full_text.txt", {n: folder / f for n, f in VBENCH2_REFERENCES.items()})
        splits = _split(rows)
    else:
        folder = root / "videophy"
        rows = _aligned(folder / "videophy.txt", {n: folder / f for n, f in VIDEOPHY_REFERENCES.items()})
        splits = _split(rows)
    return [BenchPrompt(bench=bench, line=line, prompt=p, references=r, split=splits[line]) for line, p, r in rows]


def dev_prompts(benches: tuple[Bench, ...] = ("vbench", "vbench2"), root: Path = BENCHMARKS) -> list[BenchPrompt]:
    """The dev prompts of `benches`, each bench in file order."""
    return [p for b in benches for p in load(b, root) if p.split == "dev"]


def dev_texts(root: Path = BENCHMARKS) -> set[str]:
    """The dev prompts of every bench, lower-cased: what a training set must leave out."""
    return {" ".join(p.prompt.lower().split()) for b in ("vbench", "vbench2", "videophy") for p in load(b, root)
            if p.split == "dev"}  # fmt: skip


def exists(root: Path = BENCHMARKS) -> bool:
    """Whether the benchmark files are there (tests and benches skip without them)."""
    return (root / "vbench" / "prompts" / "all_dimension.txt").is_file()
