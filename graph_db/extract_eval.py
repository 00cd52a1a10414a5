"""Soft token-overlap evaluation of `extract_phrases` against RAPO's gold extraction rows.

The gold rows (RAPO's `graph_test*.csv`) hold, per caption, the phrases an LLM extracted:
`place` (scenes), `verb_obj_word` (actions) and `scenario_word` (atmospheres). They have no subjects.
"""

from __future__ import annotations

import ast
import csv
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rapo.graph_db.extract import extract_phrases
from rapo.graph_db.model import Kind, normalize_phrase

#: The kinds the gold rows label, with the gold column of each.
GOLD_COLUMNS: dict[Kind, str] = {Kind.SCENE: "place", Kind.ACTION: "verb_obj_word", Kind.ATMOSPHERE: "scenario_word"}

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_DETERMINERS = frozenset("a an the this that these those some any each every his her its their my your our".split())


@dataclass(frozen=True)
class GoldRow:
    """One caption with its gold phrases per kind (normalized; never empty strings)."""

    caption: str
    phrases: dict[Kind, tuple[str, ...]]


def _parse_list(cell: str) -> tuple[str, ...]:
    """Parse a Python list literal cell such as "['a', 'b']"; [''] means no phrase."""
    cell = cell.strip()
    values = ast.literal_eval(cell) if cell else []
    seen = dict.fromkeys(p for p in (normalize_phrase(str(v)) for v in values) if p)
    return tuple(seen)


def load_gold(paths: Iterable[str | Path]) -> list[GoldRow]:
    """Load gold rows from RAPO-style CSV files.

    Args:
        paths: CSV files with columns Input, verb_obj_word, scenario_word and place.

    Returns:
        The rows of all files, in file order.
    """
    rows: list[GoldRow] = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                phrases = {kind: _parse_list(record[column]) for kind, column in GOLD_COLUMNS.items()}
                rows.append(GoldRow(caption=record["Input"], phrases=phrases))
    return rows


def _content(phrase: str) -> Counter[str]:
    """The multiset of a phrase's words without determiners."""
    return Counter(w for w in _WORD.findall(phrase.lower()) if w not in _DETERMINERS)


def token_f1(a: str, b: str) -> float:
    """Token F1 between two phrases on their content words (multisets; determiners dropped).

    Args:
        a: One phrase.
        b: The other phrase.

    Returns:
        2 * overlap / (len(a) + len(b)), or 0.0 when either side has no content word.
    """
    ca, cb = _content(a), _content(b)
    total = sum(ca.values()) + sum(cb.values())
    if not ca or not cb:
        return 0.0
    return 2.0 * sum((ca & cb).values()) / total


def _best(phrase: str, others: Sequence[str]) -> float:
    return max((token_f1(phrase, o) for o in others), default=0.0)


def evaluate(rows: Sequence[GoldRow]) -> dict[str, dict[str, float]]:
    """Score `extract_phrases` on gold rows with soft, micro-averaged token overlap.

    Definition, per kind K (scene, action, atmosphere), pooled over all rows:

    * precision = mean over every predicted K phrase p of max_g token_f1(p, g), g ranging over the
      same row's gold K phrases (0 when the row has none);
    * recall = mean over every gold K phrase g of max_p token_f1(g, p), p ranging over the same
      row's predicted K phrases (0 when there are none);
    * f1 = harmonic mean of precision and recall (0 when both are 0).

    A kind with no predictions has precision 0; one with no gold phrases has recall 0.

    Args:
        rows: Gold rows, e.g. from `load_gold`.

    Returns:
        {kind value: {"precision", "recall", "f1", "n_pred", "n_gold"}} for each gold kind.
    """
    result: dict[str, dict[str, float]] = {}
    predicted = [extract_phrases(row.caption) for row in rows]
    for kind in GOLD_COLUMNS:
        p_scores: list[float] = []
        r_scores: list[float] = []
        for row, pred in zip(rows, predicted, strict=True):
            gold, mine = row.phrases[kind], pred.of_kind(kind)
            p_scores.extend(_best(p, gold) for p in mine)
            r_scores.extend(_best(g, mine) for g in gold)
        precision = sum(p_scores) / len(p_scores) if p_scores else 0.0
        recall = sum(r_scores) / len(r_scores) if r_scores else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[kind.value] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "n_pred": float(len(p_scores)),
            "n_gold": float(len(r_scores)),
        }
    return result
