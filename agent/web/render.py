"""HTML pieces the web UI renders on the server: word diffs between prompts and score charts as inline SVG."""

from __future__ import annotations

import difflib
import re
from html import escape

from rapo.agent.loop.state import Evaluation

# Colours that stay apart for the usual colour-vision deficiencies (Okabe-Ito).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def word_diff(before: str, after: str) -> str:
    """`after` as HTML, with the words added since `before` in <ins> and the words removed in <del>."""
    old, new = before.split(), after.split()
    out = []
    # Matched on lower-case words without punctuation, so "beach" -> "Beach," is no change.
    keys = difflib.SequenceMatcher(a=[_key(w) for w in old], b=[_key(w) for w in new], autojunk=False)
    for op, i1, i2, j1, j2 in keys.get_opcodes():
        if op in ("replace", "delete"):
            out.append(f"<del>{escape(' '.join(old[i1:i2]))}</del>")
        if op in ("replace", "insert"):
            out.append(f"<ins>{escape(' '.join(new[j1:j2]))}</ins>")
        if op == "equal":
            out.append(escape(" ".join(new[j1:j2])))
    return " ".join(out)


def _key(word: str) -> str:
    return re.sub(r"\W", "", word.lower()) or word


def score_chart(evaluations: list[Evaluation], width: int = 560, height: int = 220) -> str:
    """An SVG line chart: each critic's best score per round (lines) and every candidate's score (dots)."""
    metrics = sorted({m for e in evaluations for m in e.scores})
    rounds = sorted({e.iteration for e in evaluations if e.scores})
    if not metrics or not rounds:
        return '<p class="muted">no scores yet</p>'
    left, right, top, bottom = 40, 130, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(r: int) -> float:
        return left + (plot_w * rounds.index(r) / (len(rounds) - 1) if len(rounds) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1.0 - v)

    parts = [
        f'<svg class="chart" role="img" aria-label="critic scores by round" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for r in rounds:
        parts.append(f'<text x="{x(r):.1f}" y="{height - 10}" text-anchor="middle">round {r}</text>')
    for k, metric in enumerate(metrics):
        colour = PALETTE[k % len(PALETTE)]
        best = [max(e.scores[metric] for e in evaluations if e.iteration == r and metric in e.scores) for r in rounds]
        points = " ".join(f"{x(r):.1f},{y(v):.1f}" for r, v in zip(rounds, best, strict=True))
        parts.append(f'<polyline class="series" data-metric="{escape(metric)}" points="{points}" stroke="{colour}"/>')
        for e in evaluations:
            if metric in e.scores:
                parts.append(
                    f'<circle cx="{x(e.iteration):.1f}" cy="{y(e.scores[metric]):.1f}" r="3" fill="{colour}">'
                    f"<title>{escape(metric)} {e.scores[metric]:.3f}, round {e.iteration} #{e.index}</title></circle>"
                )
        legend_y = top + 16 * k + 8
        parts.append(f'<rect x="{width - right + 12}" y="{legend_y - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{width - right + 28}" y="{legend_y + 1}">{escape(metric)}</text>')
    parts.append("</svg>")
    return "".join(parts)
