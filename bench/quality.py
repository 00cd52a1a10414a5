"""Benchmark Stage 1's output quality on VBench prompts the default adapter never saw, beside reference rewrites.

Held-out prompts: the val split of `finetune/default_adapter.py` (seeded, by prompt group) that come from
`all_dimension.txt`, the file every reference covers: GPT-4o's `all_dimension_longer.txt`, Wan2.1's extender
(`all_dimension_aug_wanx_seed42.txt`) and HunyuanVideo's rewrite (`hunyuan_all_dimension.txt`), all under
`../shared/data/benchmarks/vbench/prompts` relative to the project root.

    .venv/bin/python bench/quality.py                     # 40 held-out prompts, every row (about 9 min on 2 cores)
    .venv/bin/python bench/quality.py --limit 3 --rows distilled --work /tmp/bench-quality-trial

Rows: the input itself; rapo with the plain model (`--adapter none`); rapo with the distilled default, without
merging graph modifiers (`--max-modifiers 0`), without nudging its answers towards them (`--weave-boost 0`), and as
it is; and the references. Columns: faithfulness (share of the
input's content words kept), MiniLM cosine similarity to the input, words, content words added, repeated 3-grams
(share of all 3-grams that repeat one earlier in the same text), unchanged share, fallback share (Stage 1 answered
with the input because every LLM answer failed the guards), incoherent share (`tools.guards.incoherence` or a chat
artefact), share inside the target profile's length, and seconds per prompt (p50 / p95, models loaded).
Writes `<work>/quality.json` (figures and every output).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name hides the `finetune` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from rapo.agent.runs.refine import open_graph, stage1_pipeline  # noqa: E402
from rapo.agent.settings import Settings  # noqa: E402
from rapo.common import (  # noqa: E402
    progress_bar,
    quiet_libraries,
    read_lines,  # noqa: E402
    stderr,
)
from rapo.finetune.default_adapter import VBENCH, split_pairs  # noqa: E402
from rapo.graph_db.embeddings import Embedder  # noqa: E402
from rapo.tools import guards  # noqa: E402
from rapo.tools.profiles import DEFAULT_TARGET, profile  # noqa: E402
from rapo.tools.stage1 import Stage1Settings  # noqa: E402

REFERENCES = {
    "GPT-4o (VBench _longer)": "augmented_prompts/gpt_enhanced_prompts/all_dimension_longer.txt",
    "Wan2.1 extender": "augmented_prompts/Wan2.1-T2V-1.3B/all_dimension_aug_wanx_seed42.txt",
    "HunyuanVideo rewrite": "augmented_prompts/hunyuan_all_dimension.txt",
}
RAPO_ROWS = {  # --rows key -> (row name, distilled?, Stage 1 settings other than the defaults)
    "plain": ("rapo plain model", False, {}),
    "nomerge": ("rapo distilled, no merge", True, {"max_modifiers": 0}),
    "noweave": ("rapo distilled, no weave boost", True, {"weave_boost": 0.0}),
    "distilled": ("rapo distilled (default)", True, {}),
}


def held_out(vbench: Path, limit: int) -> list[tuple[int, str]]:
    """(line of all_dimension.txt, prompt) of the held-out prompts, `limit` of them evenly spaced."""
    val = [
        (int(p.source["line"]), p.input)
        for p in split_pairs(vbench)
        if p.split == "val" and Path(str(p.source["short"])).name == "all_dimension.txt"
    ]
    val.sort()
    step = max(1, len(val) // limit)
    return val[::step][:limit]


def added_words(source: str, text: str) -> int:
    """Content words of `text` whose stem is not in `source`."""
    have = {guards.stem(w) for w in guards.content_words(source)}
    return sum(guards.stem(w) not in have for w in guards.content_words(text))


def repeated_trigrams(texts: list[str]) -> float:
    """Share of all 3-grams that repeat an earlier 3-gram of the same text."""
    total = repeats = 0
    for text in texts:
        words = guards._WORD.findall(text.lower())
        grams = list(zip(words, words[1:], words[2:], strict=False))
        total += len(grams)
        repeats += len(grams) - len(set(grams))
    return repeats / total if total else 0.0


def figures(inputs: list[str], outputs: list[str], embedder: Embedder, target: str) -> dict[str, float]:
    """The quality columns of one row."""
    fit = profile(target)
    vectors = embedder.encode(inputs + outputs)  # (2N, dim), unit-norm
    n = len(inputs)
    similarity = [float(vectors[i] @ vectors[n + i]) for i in range(n)]
    incoherent = [
        guards.incoherence(s, t) is not None or guards.ARTEFACTS.search(t) is not None
        for s, t in zip(inputs, outputs, strict=True)
    ]
    return {
        "faithfulness": statistics.mean(guards.faithfulness(s, t) for s, t in zip(inputs, outputs, strict=True)),
        "similarity": statistics.mean(similarity),
        "words": statistics.mean(len(t.split()) for t in outputs),
        "added": statistics.mean(added_words(s, t) for s, t in zip(inputs, outputs, strict=True)),
        "repeated_3grams": repeated_trigrams(outputs),
        "unchanged": statistics.mean(
            " ".join(s.lower().split()) == " ".join(t.lower().split()) for s, t in zip(inputs, outputs, strict=True)
        ),  # fmt: skip
        "incoherent": statistics.mean(incoherent),
        "in_profile": statistics.mean(fit.fits(t) for t in outputs),
    }


def run_rapo(name: str, adapter: str | None, changes: dict, prompts: list[str], target: str, seed: int) -> dict:
    """Stage 1 over the prompts with one configuration; outputs, fallbacks, rejections and seconds per prompt."""
    settings = Settings()
    stage1_settings = Stage1Settings(target=target, **changes)
    stage1 = stage1_pipeline(open_graph(None, settings), None, settings.llm_dtype, stage1_settings, adapter)
    stage1.load()
    outputs, seconds, fallbacks, rejected, branches, records = [], [], 0, 0, Counter(), []
    with progress_bar() as bar:
        task = bar.add_task(name, total=len(prompts))
        for prompt in prompts:
            started = time.perf_counter()
            result = stage1.run(prompt, seed)
            seconds.append(time.perf_counter() - started)
            chosen = next(c for c in result.candidates if c.branch == result.branch and c.text == result.prompt)
            fallbacks += chosen.step == "input"
            rejected += len(result.rejected)
            branches[result.branch] += 1
            outputs.append(result.prompt)
            records.append({"input": prompt, "output": result.prompt, "branch": result.branch, "step": chosen.step,
                            "merged": result.merged, "rejected": [r.reason for r in result.rejected]})  # fmt: skip
            bar.advance(task)
    seconds.sort()
    return {
        "outputs": outputs, "records": records, "models": stage1.models(),
        "fallback": fallbacks / len(prompts), "rejected_per_prompt": rejected / len(prompts),
        "branches": dict(branches), "merged_per_prompt": statistics.mean(len(r["merged"]) for r in records),
        "p50_s": statistics.median(seconds), "p95_s": seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))],
    }  # fmt: skip


def main() -> None:
    """Run every row on the held-out prompts and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-quality"))
    parser.add_argument("--vbench", type=Path, default=VBENCH)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", default=DEFAULT_TARGET)
    parser.add_argument("--adapter", default=None, help="The distilled rows' adapter (default: the shipped one).")
    parser.add_argument("--rows", default="all", help=f"all, or a comma list of: {', '.join(RAPO_ROWS)}")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_libraries()

    prompts = held_out(args.vbench, args.limit)
    lines = [n for n, _ in prompts]
    inputs = [p for _, p in prompts]
    embedder = Embedder()
    rows: dict[str, dict] = {"input (unchanged)": {"outputs": inputs}}
    chosen = set(RAPO_ROWS) if args.rows == "all" else set(args.rows.split(","))
    for key, (name, distilled, changes) in RAPO_ROWS.items():
        if key in chosen:
            adapter = args.adapter if distilled else "none"
            rows[name] = run_rapo(name, adapter, changes, inputs, args.target, args.seed)
    for name, file in REFERENCES.items():
        texts = {n: t.strip() for n, t in read_lines(args.vbench / file)}
        rows[name] = {"outputs": [texts.get(n, "") for n in lines]}
    for row in rows.values():
        row["figures"] = figures(inputs, row["outputs"], embedder, args.target)

    # A Markdown table: what the README quotes.
    header = ["rewriter", "faithful", "similarity", "words", "added", "rep. 3-grams", "unchanged", "fallback",
              "incoherent", f"in {args.target}", "p50 s", "p95 s"]  # fmt: skip
    print(f"Stage 1 on {len(inputs)} held-out VBench prompts (target {args.target}, seed {args.seed})\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, row in rows.items():
        f = row["figures"]
        timing = [f"{row['p50_s']:.1f}", f"{row['p95_s']:.1f}"] if "p50_s" in row else ["", ""]
        fallback = f"{row['fallback']:.0%}" if "fallback" in row else ""
        cells = [
            name, f"{f['faithfulness']:.3f}", f"{f['similarity']:.3f}", f"{f['words']:.1f}", f"{f['added']:.1f}",
            f"{f['repeated_3grams']:.1%}", f"{f['unchanged']:.0%}", fallback, f"{f['incoherent']:.0%}",
            f"{f['in_profile']:.0%}", *timing,
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    args.work.mkdir(parents=True, exist_ok=True)
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "lines": lines, "inputs": inputs, "rows": rows}
    (args.work / "quality.json").write_text(json.dumps(report, indent=2, default=str))
    stderr.print(f"wrote {args.work / 'quality.json'}", markup=False)


if __name__ == "__main__":
    main()
