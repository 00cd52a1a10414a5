"""The SSPO reviser: which attempts it is shown, its length limit, and the guards on what it writes."""

from rapo.tools.profiles import profile
from rapo.tools.revise import Attempt, PromptReviser, estimate_tokens, select_history
from tests.test_stage1 import ScriptedLLM

FEEDBACK = "Nearly static: only 1 of 8 frame pairs move; ask for clearly visible motion. " * 3


def attempts(n: int) -> list[Attempt]:
    """n scored attempts; the 3rd and the 6th score best."""
    best = {2: 0.9, 5: 0.8}
    return [Attempt(prompt=f"a dog running on the beach, take {i + 1}", scores={"flow": best.get(i, 0.2 + i / 100)},
                    feedback=FEEDBACK) for i in range(n)]  # fmt: skip


def test_history_shows_the_best_and_the_latest_within_the_token_budget():
    history = attempts(12)
    per_line = estimate_tokens(select_history(history[:1], 10_000)[0])
    lines = select_history(history, budget_tokens=4 * per_line)
    numbers = [int(line.split(".")[0]) for line in lines]
    assert numbers == [3, 6, 11, 12]  # the two best, then the latest back while the budget lasts; oldest first
    assert [line.endswith("best so far") for line in lines] == [True, True, False, False]
    assert sum(estimate_tokens(line) for line in lines) <= 4 * per_line + 4
    # A bigger budget shows more of the recent attempts, never a fixed number
    assert len(select_history(history, budget_tokens=8 * per_line)) == 8
    # The latest attempt is shown even when its line alone is over the budget
    assert [int(line.split(".")[0]) for line in select_history(history, budget_tokens=1)] == [3, 12]


def test_revision_length_comes_from_the_target_profile():
    long = ("a dog running on the beach as waves roll in under a pale morning sky, its paws kicking up wet sand "
            "while gulls circle above the shoreline; the camera tracks low beside it, following every stride past "
            "driftwood, shells and tide pools glinting in the soft golden light")  # fmt: skip
    llm = ScriptedLLM({"earlier attempts": [long]})
    short = PromptReviser(llm, profile("short"))
    assert short.max_words == 35 and short.decoding.max_new_tokens == int(35 * 1.6) + 16
    found, rejected = short.revise("a dog running on the beach", attempts(2), k=1, seed=0)
    assert not found and rejected and all("words" in r.reason for r in rejected)
    found, _ = PromptReviser(llm, profile("wan")).revise("a dog running on the beach", attempts(2), k=1, seed=0)
    assert found == [long] and 35 < len(long.split()) <= 100
    asked = llm.requests[-1][-1]["content"]
    assert '1. "a dog running on the beach, take 1"' in asked and "best so far" in asked
