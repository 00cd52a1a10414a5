import pytest

from tools import guards


@pytest.mark.parametrize(
    ("source", "candidate", "reason"),
    [
        ("a dog running on the beach", "A dog runs along the sandy beach at sunset.", None),
        ("a dog running on the beach", "A cat runs along the sandy beach.", "drops 'dog'"),
        ("a bicycle on the left of a car", "A bicycle rides down a quiet road.", "drops 'left', 'car'"),
        ("three red apples", "Two red apples on a table.", "drops 'three'"),
        ("three red apples", "3 red apples on a wooden table.", None),
        ("a red car", "A blue car parked outside.", "drops 'red'"),
        ("a dog", "", "empty"),
        ("a dog", "Sure! Here is a dog playing.", "chat artefact 'Sure'"),
        ("a dog", "<|im_start|>a dog", "chat artefact '<|'"),
        ("a dog", "A dog runs. Image quality is good, but too bright.", "critic's words 'Image quality'"),
        ("a dog", "a dog running, motion 0.21, sharpness 0.80", "critic's words '0.21'"),
        ("a dog", "A dog runs; we want to enhance that.", "critic's words 'we want'"),
        ("a team", "A team scores a goal in a stadium.", None),
        ("a dog", "a dog " + "running fast " * 50, "too long: 102 words > 80"),
    ],
)
def test_check(source, candidate, reason):
    assert guards.check(source, candidate, max_words=80) == reason


def test_padding_that_restates_the_prompt_is_rejected():
    reason = guards.check("a bird and a cat", "A bird and a cat. The bird is a cat. The cat is a bird.", 80)
    assert reason.startswith("repetitive")


def test_a_merge_must_add_the_modifier():
    assert guards.check("a dog on the beach", "a dog on the beach", 80, must_add="chasing a frisbee") == (
        "does not add 'chasing a frisbee'"
    )
    assert guards.check("a dog on the beach", "a dog on the beach chasing a frisbee", 80, "chasing a frisbee") is None


def test_stems_and_faithfulness():
    assert {guards.stem(w) for w in ("running", "runs", "run")} == {"run"}
    assert guards.stem("puppies") == guards.stem("puppy")
    assert guards.faithfulness("a dog and a cat", "a dog") == 0.5
    assert guards.faithfulness("the", "anything") == 1.0


def test_trim_unfinished():
    assert guards.trim_unfinished("A dog runs. The sun sets over the") == "A dog runs."
    assert guards.trim_unfinished("no sentence end") == "no sentence end"
