"""Selection and stopping rules of the SSPO loop, as pure functions."""

from __future__ import annotations

from rapo.agent.loop.state import Evaluation


def mean_ranks(evaluations: list[Evaluation]) -> list[float]:
    """Each evaluation's mean rank over the metrics (1 is best), and over the noise seeds, averaging tied ranks.

    With several seeds (`seed_scores`) the candidates are ranked on each (metric, seed) pair, so a prompt that
    won on one seed's noise does not win on that alone. A metric (or seed) missing from an evaluation ranks it last
    there.
    """
    columns = sorted({(m, s) for e in evaluations for s, scores in _by_seed(e).items() for m in scores})
    totals = [0.0] * len(evaluations)
    for metric, seed in columns:
        values = [_by_seed(e).get(seed, {}).get(metric, float("-inf")) for e in evaluations]
        for i, value in enumerate(values):
            better = sum(v > value for v in values)
            ties = sum(v == value for v in values)
            totals[i] += better + (ties + 1) / 2  # the average of the tied positions
    return [t / len(columns) if columns else 0.0 for t in totals]


def _by_seed(evaluation: Evaluation) -> dict[str, dict[str, float]]:
    return evaluation.seed_scores or {"": evaluation.scores}


def select_best(evaluations: list[Evaluation]) -> Evaluation | None:
    """The evaluation with the lowest mean rank over all metrics and rounds, never simply the last.

    Ties go to the higher fused score, then to the earlier candidate.
    """
    ranked = rank_order(evaluations)
    return ranked[0] if ranked else None


def rank_order(evaluations: list[Evaluation]) -> list[Evaluation]:
    """The scored evaluations, best first: by mean rank, then fused score, then the earlier candidate."""
    scored = [e for e in evaluations if e.scores]
    ranks = mean_ranks(scored)
    order = sorted(range(len(scored)), key=lambda i: (ranks[i], -scored[i].fused, scored[i].iteration, scored[i].index))
    return [scored[i] for i in order]


def unmet(evaluation: Evaluation, thresholds: dict[str, float]) -> dict[str, float]:
    """The metrics whose score is below its threshold: name -> score (missing scores count as 0)."""
    return {m: evaluation.scores.get(m, 0.0) for m, t in thresholds.items() if evaluation.scores.get(m, 0.0) < t}
