import pytest

from rapo.agent.loop.selection import mean_ranks, select_best, unmet
from rapo.agent.loop.state import Evaluation


def ev(iteration, index, **scores):
    return Evaluation(iteration=iteration, index=index, prompt=f"p{iteration}.{index}", scores=scores)


def test_mean_rank_picks_the_best_round_not_the_last():
    history = [
        ev(0, 0, flow=0.3, temporal=0.5),
        ev(1, 0, flow=0.9, temporal=0.8),  # best on both metrics
        ev(2, 0, flow=0.6, temporal=0.7),  # the last round is worse
    ]
    assert select_best(history).prompt == "p1.0"


def test_mean_rank_beats_a_single_high_score():
    history = [
        ev(0, 0, flow=1.0, temporal=0.1, imaging=0.1),  # fused 0.4, but last on two of three metrics
        ev(0, 1, flow=0.5, temporal=0.6, imaging=0.6),  # ranks 2, 1, 1
    ]
    assert mean_ranks(history) == [pytest.approx((1 + 2 + 2) / 3), pytest.approx((2 + 1 + 1) / 3)]
    assert select_best(history).prompt == "p0.1"


def test_ties_go_to_the_higher_fused_score_then_the_earlier():
    a, b = ev(0, 0, flow=0.9, temporal=0.2), ev(0, 1, flow=0.2, temporal=0.95)  # equal mean rank
    assert select_best([a, b]).prompt == "p0.1"  # fused 0.575 > 0.55
    c, d = ev(0, 0, flow=0.5), ev(1, 0, flow=0.5)
    assert select_best([d, c]).prompt == "p0.0"


def test_unscored_candidates_are_ignored_and_unmet_thresholds_listed():
    failed = Evaluation(iteration=0, index=0, prompt="x", error="generator failed")
    assert select_best([failed]) is None
    best = ev(0, 1, flow=0.4, temporal=0.9)
    assert select_best([failed, best]) is best
    assert unmet(best, {"flow": 0.5, "temporal": 0.5, "clip": 0.3}) == {"flow": 0.4, "clip": 0.0}


def test_with_several_seeds_each_seed_ranks_so_one_lucky_seed_does_not_win():
    lucky = Evaluation(iteration=0, index=0, prompt="lucky", scores={"flow": 0.6},
                       seed_scores={"0": {"flow": 0.99}, "1": {"flow": 0.4}, "2": {"flow": 0.41}})  # fmt: skip
    steady = Evaluation(iteration=1, index=0, prompt="steady", scores={"flow": 0.55},
                        seed_scores={"0": {"flow": 0.55}, "1": {"flow": 0.55}, "2": {"flow": 0.55}})  # fmt: skip
    assert lucky.scores["flow"] > steady.scores["flow"]  # the mean alone would pick the lucky seed's prompt
    assert mean_ranks([lucky, steady]) == [pytest.approx(5 / 3), pytest.approx(4 / 3)]
    assert select_best([lucky, steady]).prompt == "steady"
