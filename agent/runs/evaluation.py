"""`rapo eval`: a run's prompts rendered for a benchmark, then scored by its evaluator, score against round.

The prompts are rendered as given, as Stage 1 chose them and as SSPO's best at given rounds, in the benchmark's layout.

    run_dir/eval/<bench>/eval.json          the sample's settings; a second `eval sample` must match them
    run_dir/eval/<bench>/<variant>/...      the benchmark's layout (agent/runs/eval_layouts.py), hard links into
    run_dir/videos/<key>.mp4                the run's video cache, so a video the loop already made is not made again
    run_dir/eval/<bench>/samples.jsonl      one line per video: variant, prompt, seed, key, paths (or why it is missing)
    run_dir/eval/<bench>/scores.{json,csv,png}   `eval score`: one cell per (variant, group, seed folder)

Every video goes through `VideoGenerator.generate`, whose cache and per-key file lock make a video exactly once, also
when a killed sample is run again or two processes sample the same run.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from rapo.agent.loop.selection import select_best
from rapo.agent.runs.eval_layouts import DEFAULT_SEEDS, check_bench, group_folder, slots
from rapo.agent.runs.trajectory import TrajectoryStore, open_run_dir
from rapo.common import RapoError, jsonl_line, progress_bar, stderr
from rapo.tools.generator import GenerationParams, VideoGenerator


class EvalSettings(BaseModel):
    """What a sample was made with (`eval.json`); sampling again into the same folder must use the same."""

    bench: str
    run_id: str
    generator: str = Field(description="The generator's model id: a tiny-* spec or a pipeline folder.")
    params: GenerationParams
    seeds: int
    seed_base: int = Field(description="Video i of a prompt uses seed seed_base + i, so each can be made alone.")
    rounds: list[int]


class Variants(BaseModel):
    """The prompts one user prompt is rendered from, by variant, and why a variant has none."""

    prompt_id: int
    input: str
    texts: dict[str, str] = Field(default_factory=dict)
    missing: dict[str, str] = Field(default_factory=dict)


class SampleReport(BaseModel):
    """What `sample` did."""

    made: int = 0
    cached: int = 0
    missing: int = 0
    failed: int = 0
    folder: Path


def variant_names(rounds: list[int]) -> list[str]:
    """The variants in plot order: the input, Stage 1's choice, then SSPO's best after each round."""
    return ["input", "stage1", *(f"round{r}" for r in rounds)]


def parse_rounds(text: str) -> list[int]:
    """`0,2,4` -> [0, 2, 4]; a RapoError for anything else."""
    try:
        rounds = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise RapoError(f"--rounds {text!r}: expected round numbers separated by commas, e.g. 0,2,4") from None
    if any(r < 0 for r in rounds):
        raise RapoError(f"--rounds {text!r}: rounds start at 0")
    return rounds


def prompt_variants(store: TrajectoryStore, run_id: str, rounds: list[int]) -> list[Variants]:
    """Every prompt's input, Stage 1's choice and SSPO's best by each round.

    Stage 1's choice is round 0's first candidate; the best by round r is the best by mean rank among the candidates
    of rounds 0..r (a loop that stopped earlier keeps its best).
    """
    out = []
    for row in store.prompts(run_id):
        variants = Variants(prompt_id=row.prompt_id, input=row.input, texts={"input": row.input})
        evaluations = store.evaluations(run_id, row.prompt_id)
        first = [e for e in evaluations if e.iteration == 0 and e.index == 0]
        if first:
            variants.texts["stage1"] = first[0].prompt
        else:
            variants.missing["stage1"] = f"prompt {row.prompt_id} has no round 0 ({row.status})"
        for r in rounds:
            best = select_best([e for e in evaluations if e.iteration <= r])
            if best is None:
                variants.missing[f"round{r}"] = f"prompt {row.prompt_id} has no scored candidate by round {r}"
            else:
                variants.texts[f"round{r}"] = best.prompt
        out.append(variants)
    return out


def sample(
    bench: str,
    run_dir: Path,
    generator: VideoGenerator,
    params: GenerationParams,
    rounds: list[int],
    seeds: int | None = None,
    seed_base: int = 0,
) -> SampleReport:
    """Render every variant of every prompt of the run in `run_dir` into the benchmark's layout; resumable.

    A video that fails is reported on stderr and in `samples.jsonl`, and the sample goes on.
    """
    # 1. What to render: the run's prompts and their variants, checked against an earlier sample's settings
    check_bench(bench)
    seeds = seeds or DEFAULT_SEEDS[bench]
    store, run_id = open_run_dir(run_dir)
    try:
        rows = store.prompts(run_id)
        variants = prompt_variants(store, run_id, rounds)
    finally:
        store.close()
    folder = run_dir / "eval" / bench
    settings = EvalSettings(
        bench=bench, run_id=run_id, generator=generator.model_id, params=params, seeds=seeds, seed_base=seed_base,
        rounds=rounds,
    )  # fmt: skip
    _check_settings(folder / "eval.json", settings)
    layout = slots(bench, [(r.input, r.meta) for r in rows], seeds)

    # 2. Render (or find in the cache) each video and link it where the benchmark expects it
    report = SampleReport(folder=folder)
    lines = []
    names = variant_names(rounds)
    with progress_bar() as bar:
        task = bar.add_task(f"{bench} videos", total=len(layout) * len(names))
        for slot in layout:
            for variant in names:
                prompt = variants[slot.prompt_id].texts.get(variant)
                seed = seed_base + slot.seed_index
                line = {"variant": variant, "prompt_id": slot.prompt_id, "input": variants[slot.prompt_id].input,
                        "prompt": prompt, "seed": seed, "paths": [f"{variant}/{p}" for p in slot.paths],
                        "groups": slot.groups}  # fmt: skip
                if prompt is None:
                    line["missing"] = variants[slot.prompt_id].missing[variant]
                    report.missing += 1
                else:
                    try:
                        video = generator.generate(prompt, seed, params, out_dir=run_dir)
                    except Exception as exc:  # noqa: BLE001 - one video's failure never stops the sample
                        line["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                        report.failed += 1
                        stderr.print(f"{variant} prompt {slot.prompt_id} seed {seed}: {line['error']}", markup=False)
                    else:
                        for path in line["paths"]:
                            _place(video.path, folder / path)
                        line["key"] = video.key
                        report.cached += video.cached
                        report.made += not video.cached
                lines.append(line)
                bar.advance(task)

    # 3. The manifest, and the files an evaluator reads besides the videos
    _write_text(folder / "samples.jsonl", "".join(jsonl_line(line) + "\n" for line in lines))
    if bench == "videophy":
        _write_videophy_csvs(folder, lines, seeds)
    return report


def _check_settings(path: Path, settings: EvalSettings) -> None:
    if path.is_file():
        before = EvalSettings.model_validate_json(path.read_text(encoding="utf-8"))
        if before != settings:
            differ = [k for k in settings.model_fields if getattr(before, k) != getattr(settings, k)]
            raise RapoError(
                f"{path.parent} holds a sample made with other settings ({', '.join(differ)} differ): "
                f"sample with the same ones to resume it, or delete {path.parent}"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_text(path, settings.model_dump_json(indent=2) + "\n")


def _place(video: Path, target: Path) -> None:
    """Put the cached `video` at `target` as a hard link (a copy across file systems), atomically."""
    if target.is_file() and os.path.samefile(video, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(video, partial)
    except OSError:
        shutil.copyfile(video, partial)
    partial.replace(target)


def _write_videophy_csvs(folder: Path, lines: list[dict], seeds: int) -> None:
    """VideoPhy's evaluator input: `videopath,caption` for each variant (and seed folder), the user's prompt."""
    tables: dict[Path, list[tuple[str, str]]] = {}
    for line in lines:
        if "key" in line:
            csv_path = folder / Path(line["paths"][0]).parent.parent / "videophy.csv"
            tables.setdefault(csv_path, []).append((str((folder / line["paths"][0]).resolve()), line["input"]))
    for csv_path, rows in tables.items():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["videopath", "caption"])
        writer.writerows(rows)
        _write_text(csv_path, buffer.getvalue())


# --- scoring ---------------------------------------------------------------------------------------------------

Evaluator = Callable[[str, Path, str, list[dict]], float]
"""(bench, folder of videos, group, the samples.jsonl lines of that folder) -> the folder's score."""

_NO_PACKAGE = {
    "t2v-compbench": "T2V-CompBench's evaluators are scripts (LLaVA, GroundingDINO, DOT) in "
    "github.com/KaiyueSun98/T2V-CompBench, not a package: run them on each {folder}/<variant>/<category> folder",
    "phygenbench": "PhyGenEval is a set of scripts (VQAScore, LLaVA-Interleave, GPT-4o) in github.com/OpenGVLab/"
    "PhyGenBench, not a package: point them at {folder}/<variant>",
    "videophy": "VideoPhy's evaluator (VideoCon-Physics) is a script in github.com/Hritikbansal/videophy: run it on "
    "{folder}/<variant>/videophy.csv",
}


class ScoreTable(BaseModel):
    """Scores by group (a VBench dimension, a category) and variant, averaged over seed folders."""

    bench: str
    variants: list[str]
    groups: list[str]
    table: dict[str, dict[str, float]] = Field(description="group -> variant -> score.")
    cells: dict[str, float] = Field(description="'variant|group|seed folder' -> score: what the evaluator returned.")


def load_evaluator(bench: str, spec: str | None, folder: Path, device: str | None) -> Evaluator:
    """The benchmark's official evaluator, or `spec` (`module:function` or `path/to/file.py:function`).

    Raises:
        RapoError: no evaluator is installed for `bench`; the message says what is missing and what to run.
    """
    if spec:
        module_name, _, name = spec.partition(":")
        if not name:
            raise RapoError(f"--evaluator {spec!r}: expected MODULE:FUNCTION or FILE.py:FUNCTION")
        try:
            if module_name.endswith(".py"):
                loader = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
                if loader is None or loader.loader is None:
                    raise ImportError(f"cannot load {module_name}")
                module = importlib.util.module_from_spec(loader)
                loader.loader.exec_module(module)
            else:
                module = importlib.import_module(module_name)
            return getattr(module, name)
        except (ImportError, OSError, AttributeError) as exc:
            raise RapoError(f"--evaluator {spec!r}: {exc}") from None
    if bench == "vbench":
        return _vbench_evaluator(folder / "vbench_results", device)
    raise RapoError(
        f"no evaluator for {bench} is installed: {_NO_PACKAGE[bench].format(folder=folder)}; "
        "or pass --evaluator MODULE:FUNCTION"
    )


def _vbench_evaluator(work: Path, device: str | None) -> Evaluator:
    """VBench's own `VBench.evaluate`, one dimension folder at a time (PyPI `vbench`; never met here)."""
    try:
        from vbench import VBench
    except ImportError:
        raise RapoError(
            "VBench's evaluator is not installed: `pip install vbench` (plus its detectron2 and model weights, "
            "which it downloads on first use; see github.com/Vchitect/VBench), or pass --evaluator MODULE:FUNCTION"
        ) from None
    from importlib.resources import files

    import torch

    full_info = str(files("vbench") / "VBench_full_info.json")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    def evaluate(bench: str, folder: Path, group: str, lines: list[dict]) -> float:
        # A prompt outside VBench's list is read from the file name (custom_input), judged on overall consistency.
        dimension, mode = ("overall_consistency", "custom_input") if group == "custom" else (group, "vbench_standard")
        name = f"{folder.parent.name}-{group}"
        VBench(device, full_info, str(work)).evaluate(
            videos_path=str(folder), name=name, dimension_list=[dimension], mode=mode
        )
        results = json.loads((work / f"{name}_eval_results.json").read_text(encoding="utf-8"))
        return float(results[dimension][0])

    return evaluate


def read_sample(bench: str, run_dir: Path) -> tuple[Path, EvalSettings, list[dict]]:
    """A finished sample's folder, settings and `samples.jsonl` lines; a RapoError saying what to run when none."""
    folder = run_dir / "eval" / check_bench(bench)
    settings_path, samples_path = folder / "eval.json", folder / "samples.jsonl"
    if not settings_path.is_file():
        raise RapoError(f"no {bench} sample in {run_dir}: run `rapo eval sample {bench} --out {run_dir}` first")
    if not samples_path.is_file():
        raise RapoError(f"the {bench} sample in {run_dir} did not finish: run `rapo eval sample` again to complete it")
    settings = EvalSettings.model_validate_json(settings_path.read_text(encoding="utf-8"))
    lines = [json.loads(line) for line in samples_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return folder, settings, lines


def score(bench: str, run_dir: Path, evaluator: Evaluator) -> ScoreTable:
    """Score each (variant, group, seed folder) of a finished sample once; resumable through `scores.json`."""
    folder, settings, lines = read_sample(bench, run_dir)
    variants = variant_names(settings.rounds)
    groups = sorted({g for line in lines for g in line["groups"]})
    scores_path = folder / "scores.json"
    cells: dict[str, float] = {}
    if scores_path.is_file():
        cells = ScoreTable.model_validate_json(scores_path.read_text(encoding="utf-8")).cells

    # One evaluator call per folder it reads; each cell is saved as soon as it is known
    units = [
        (variant, group, group_folder(bench, group, i, settings.seeds))
        for variant in variants
        for group in groups
        for i in range(1 if bench == "vbench" else settings.seeds)
    ]
    with progress_bar() as bar:
        task = bar.add_task(f"{bench} scores", total=len(units))
        for variant, group, sub in units:
            key = f"{variant}|{group}|{sub}"
            members = [
                line for line in lines
                if line["variant"] == variant and group in line["groups"] and "key" in line
                and (bench == "vbench" or _folder_of(bench, group, line, settings) == sub)
            ]  # fmt: skip
            if key not in cells and members:
                cells[key] = float(evaluator(bench, folder / variant / sub, group, members))
                _save_scores(scores_path, _table(bench, variants, groups, cells))
            bar.advance(task)
    table = _table(bench, variants, groups, cells)
    _save_scores(scores_path, table)
    _write_csv(folder / "scores.csv", table)
    return table


def _folder_of(bench: str, group: str, line: dict, settings: EvalSettings) -> str:
    return group_folder(bench, group, int(line["seed"]) - settings.seed_base, settings.seeds)


def _table(bench: str, variants: list[str], groups: list[str], cells: dict[str, float]) -> ScoreTable:
    table: dict[str, dict[str, float]] = {}
    for group in groups:
        for variant in variants:
            values = [v for k, v in cells.items() if k.split("|")[:2] == [variant, group]]
            if values:
                table.setdefault(group, {})[variant] = sum(values) / len(values)
    return ScoreTable(bench=bench, variants=variants, groups=groups, table=table, cells=cells)


def mean_row(table: ScoreTable) -> dict[str, float]:
    """Each variant's mean over the groups that have its score."""
    out = {}
    for variant in table.variants:
        values = [row[variant] for row in table.table.values() if variant in row]
        if values:
            out[variant] = sum(values) / len(values)
    return out


def _save_scores(path: Path, table: ScoreTable) -> None:
    _write_text(path, table.model_dump_json(indent=2) + "\n")


def _write_csv(path: Path, table: ScoreTable) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["group", *table.variants])
    for group in [*table.groups, "mean"]:
        row = mean_row(table) if group == "mean" else table.table.get(group, {})
        writer.writerow([group, *(f"{row[v]:.4f}" if v in row else "" for v in table.variants)])
    _write_text(path, buffer.getvalue())


def plot(table: ScoreTable, path: Path) -> Path:
    """Score against variant (input, Stage 1, round r, ...) as a PNG: one line per group, the mean in bold."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=120)
    x = list(range(len(table.variants)))
    many = len(table.groups) > 8
    for group in table.groups:
        row = table.table.get(group, {})
        points = [(i, row[v]) for i, v in enumerate(table.variants) if v in row]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", linewidth=1, alpha=0.4 if many else 0.8,
                      label=None if many else group)  # fmt: skip
    mean = mean_row(table)
    points = [(i, mean[v]) for i, v in enumerate(table.variants) if v in mean]
    if points:
        axes.plot(*zip(*points, strict=True), marker="o", linewidth=2.5, color="black", label="mean")
    axes.set_xticks(x, table.variants)
    axes.set_ylabel(f"{table.bench} score")
    axes.set_title(f"{table.bench}: score against round")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.png")
    figure.savefig(partial)
    plt.close(figure)
    partial.replace(path)
    return path


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
