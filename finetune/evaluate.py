"""Base vs adapter on the val split: similarity to the targets, ROUGE-L, faithfulness and length."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, Field

from rapo.common import RapoError
from rapo.finetune.dataset import Pair, read_pairs
from rapo.finetune.train import TEMPLATE, check_adapter_matches, resolve_base
from rapo.graph_db.embeddings import Embedder
from rapo.prompts.loader import load_template
from rapo.tools import distill, guards
from rapo.tools.llm import Decoding, LocalLLM

# Greedy, with the mild repetition controls small models need (tools/llm.py's notes).
EVAL_DECODING = Decoding(max_new_tokens=200, temperature=0.0, repetition_penalty=1.1, no_repeat_ngram_size=4)
EVAL_MAX_WORDS = 160  # the guards' length bound: VBench's GPT-4o rewrites run up to about 150 words
METRICS = ("similarity", "rouge_l", "faithfulness", "words")
# "adapter+guards" is the adapter's answer where it passes Stage 1's guards (no dropped content word, no chat
# artefact, no loop or other incoherence, at most EVAL_MAX_WORDS), else the input. Stage 1 also retries
# once at a higher temperature before it gives up, so this is a lower bound on what the person gets.
# "input" is the user's prompt unchanged: the floor any rewriter must beat on similarity to the targets.
MODELS = ("input", "base", "adapter", "adapter+guards")


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a) * len(b)) time, O(len(b)) space)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased word tokens: 1.0 for the same words in order, 0.0 for nothing in common."""
    c, r = guards._WORD.findall(candidate.lower()), guards._WORD.findall(reference.lower())
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


class Row(BaseModel):
    """One val pair and both models' answers with their metrics."""

    input: str
    target: str
    outputs: dict[str, str] = Field(description="'base' and 'adapter' answers.")
    metrics: dict[str, dict[str, float]] = Field(description="model → metric → value.")


class EvalReport(BaseModel):
    """The means per model, every row, and what produced them."""

    data: str
    adapter: str
    base: str
    template: str
    decoding: Decoding
    pairs: int
    means: dict[str, dict[str, float]] = Field(description="model → metric → mean over the val pairs.")
    rows: list[Row]
    seconds: float


def evaluate(
    adapter: Path,
    data: Path,
    base: str | Path | None = None,
    limit: int | None = None,
    embedder: Embedder | None = None,
) -> EvalReport:
    """Rewrite every val input with the base and with base + adapter, and score both against the targets."""
    # 1. Check inputs before any model loads
    pairs = read_pairs(data, "val")[:limit] if limit else read_pairs(data, "val")
    base_path = resolve_base(base)
    check_adapter_matches(adapter, base_path)
    llm = LocalLLM(base_path, dtype="float32", adapter=adapter)
    base_llm = llm.plain()
    embedder = embedder or Embedder()
    template = load_template(TEMPLATE)

    # 2. Generate with the adapter on and off
    started = time.perf_counter()
    outputs: list[dict[str, str]] = []
    for i, pair in enumerate(pairs):
        messages = distill.messages(pair.input, pair.details)  # both continue the user's prompt
        prefix = distill.answer_prefix(pair.input)
        base_text = f"{prefix} {guards.clean(base_llm.generate(messages, i, EVAL_DECODING).text)}"
        tuned_text = f"{prefix} {guards.clean(llm.generate(messages, i, EVAL_DECODING).text)}"
        kept = guards.check(pair.input, tuned_text, EVAL_MAX_WORDS) is None
        outputs.append(
            {"input": pair.input, "base": base_text, "adapter": tuned_text,
             "adapter+guards": tuned_text if kept else pair.input}
        )  # fmt: skip

    # 3. Score
    rows, means = score(pairs, outputs, embedder)
    return EvalReport(
        data=str(data), adapter=str(adapter), base=str(base_path), template=template.id, decoding=EVAL_DECODING,
        pairs=len(pairs), means=means, rows=rows, seconds=round(time.perf_counter() - started, 2),
    )  # fmt: skip


def score(
    pairs: list[Pair], outputs: list[dict[str, str]], embedder: Embedder
) -> tuple[list[Row], dict[str, dict[str, float]]]:
    """Every model's answers against the targets: the rows, and model → metric → mean."""
    targets = embedder.encode([p.target for p in pairs])  # (N, dim), unit-norm
    rows, sums = [], {m: dict.fromkeys(METRICS, 0.0) for m in MODELS}
    answers = {m: embedder.encode([o[m] or " " for o in outputs]) for m in MODELS}  # (N, dim) each
    for i, (pair, out) in enumerate(zip(pairs, outputs, strict=True)):
        metrics = {}
        for m in MODELS:
            metrics[m] = {
                "similarity": round(float(answers[m][i] @ targets[i]), 4),
                "rouge_l": round(rouge_l(out[m], pair.target), 4),
                "faithfulness": round(guards.faithfulness(pair.input, out[m]), 4),
                "words": float(len(out[m].split())),
            }
            for k, v in metrics[m].items():
                sums[m][k] += v
        rows.append(Row(input=pair.input, target=pair.target, outputs=out, metrics=metrics))
    means = {m: {k: round(v / len(pairs), 4) for k, v in s.items()} for m, s in sums.items()}
    means["target"] = {"words": round(sum(len(p.target.split()) for p in pairs) / len(pairs), 2)}
    return rows, means


def write_report(report: EvalReport, out: Path) -> None:
    """Write the report as JSON, atomically."""
    if out.is_dir():
        raise RapoError(f"--report {out} is a folder; give a file name")
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False), encoding="utf-8")
    partial.replace(out)


def table_rows(report: EvalReport) -> list[tuple[str, ...]]:
    """(model, similarity, ROUGE-L, faithfulness, words) rows for a printed table; the target's length last."""
    rows = [
        (m, *(f"{report.means[m][k]:.3f}" if k != "words" else f"{report.means[m][k]:.1f}" for k in METRICS))
        for m in MODELS
    ]
    rows.append(("target", "1.000", "1.000", "", f"{report.means['target']['words']:.1f}"))
    return rows
