"""Where each benchmark's evaluator expects its videos: file names and folders, one function per benchmark.

    vbench         {variant}/{dimension}/{prompt}-{i}.mp4     5 videos a prompt, in every dimension it belongs to
                   (VBench's `prompts/README.md`); a prompt with no `dimension` goes to `custom/` (VBench's
                   `--mode custom_input`, which reads the prompt from the file name).
    t2v-compbench  {variant}/{category}/{n:04d}.mp4            one video a prompt, numbered from 1 in prompt order
                   within its category (T2V-CompBench's README); `category` from the prompt's metadata, else `all`.
    phygenbench    {variant}/output_video_{n}.mp4              one video a prompt, n = position in prompts.json + 1
                   (PhyGenEval's scripts read `output_video_{i+1}.mp4`).
    videophy       {variant}/videos/{n:04d}.mp4 + videophy.csv one video a prompt; the CSV has the `videopath` and
                   `caption` columns VideoPhy's evaluator reads.

Benchmarks that take one video a prompt get a `seed{i}/` folder per seed when more are asked for, so each folder
stays a valid input of its evaluator. A variant is what the video was made from: `input`, `stage1`, `round{r}`;
every file is named by the *user's* prompt (or its position), because that is what the benchmark judges.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

from pydantic import BaseModel, JsonValue

from rapo.common import InputFileError

BENCHES = ("vbench", "t2v-compbench", "phygenbench", "videophy")
DEFAULT_SEEDS = {"vbench": 5, "t2v-compbench": 1, "phygenbench": 1, "videophy": 1}


class Slot(BaseModel):
    """One video of a benchmark sample: which prompt, which seed, and where its evaluator looks for it."""

    prompt_id: int
    seed_index: int
    paths: list[str]  # relative to the variant folder
    groups: list[str]  # the evaluator's unit each path belongs to (a VBench dimension, a category, "all")


def check_bench(bench: str) -> str:
    """`bench`, or an InputFileError naming the known ones."""
    if bench not in BENCHES:
        raise InputFileError(f"unknown benchmark {bench!r}; choose one of {', '.join(BENCHES)}")
    return bench


def slots(bench: str, prompts: list[tuple[str, dict[str, JsonValue]]], seeds: int) -> list[Slot]:
    """Every video of the sample, prompt by prompt, seed by seed: where each goes relative to its variant folder.

    Raises:
        InputFileError: a prompt cannot be a file name (VBench names files by prompt).
    """
    layout: Callable[[int, str, dict, int, int], tuple[list[str], list[str]]] = _LAYOUTS[check_bench(bench)]
    per_category: dict[str, int] = {}
    out = []
    for prompt_id, (text, meta) in enumerate(prompts):
        category = _category(meta)
        per_category[category] = per_category.get(category, 0) + 1
        number = per_category[category] if bench == "t2v-compbench" else prompt_id + 1
        for i in range(seeds):
            paths, groups = layout(prompt_id, text, meta, number, i)
            if seeds > 1 and bench != "vbench":
                paths = [f"seed{i}/{p}" for p in paths]
            out.append(Slot(prompt_id=prompt_id, seed_index=i, paths=paths, groups=groups))
    return out


def group_folder(bench: str, group: str, seed_index: int, seeds: int) -> str:
    """The folder, relative to the variant folder, that holds `group`'s videos of one seed (what an evaluator reads)."""
    folder = {"vbench": group, "t2v-compbench": group, "phygenbench": ".", "videophy": "videos"}[check_bench(bench)]
    if seeds > 1 and bench != "vbench":
        folder = f"seed{seed_index}/{folder}"
    return str(PurePosixPath(folder))


def _vbench(prompt_id: int, text: str, meta: dict, number: int, i: int) -> tuple[list[str], list[str]]:
    if "/" in text or "\0" in text or len(f"{text}-{i}.mp4".encode()) > 255:
        raise InputFileError(
            f"prompt {prompt_id}: VBench names each video by its prompt, and {text[:60]!r} cannot be a file name "
            "(a '/' or over 255 bytes)"
        )
    dimensions = meta.get("dimension") or ["custom"]
    if isinstance(dimensions, str):
        dimensions = [dimensions]
    groups = [str(d) for d in dimensions]
    return [f"{d}/{text}-{i}.mp4" for d in groups], groups


def _t2v_compbench(prompt_id: int, text: str, meta: dict, number: int, i: int) -> tuple[list[str], list[str]]:
    category = _category(meta)
    return [f"{category}/{number:04d}.mp4"], [category]


def _phygenbench(prompt_id: int, text: str, meta: dict, number: int, i: int) -> tuple[list[str], list[str]]:
    return [f"output_video_{number}.mp4"], ["all"]


def _videophy(prompt_id: int, text: str, meta: dict, number: int, i: int) -> tuple[list[str], list[str]]:
    return [f"videos/{prompt_id:04d}.mp4"], ["all"]


def _category(meta: dict) -> str:
    category = meta.get("category")
    if isinstance(category, str) and category.strip() and "/" not in category:
        return category.strip()
    return "all"


_LAYOUTS = {"vbench": _vbench, "t2v-compbench": _t2v_compbench, "phygenbench": _phygenbench, "videophy": _videophy}
