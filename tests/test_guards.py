import pytest

from rapo.tools import guards


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
    assert reason == "restates the prompt: 'The bird is a cat.'"


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


# Real outputs of the plain SmolLM2-135M Stage 1 (issue 14) and of early distilled checkpoints, with the rule each
# one breaks; and real GPT-4o rewrites from VBench, which must pass.
@pytest.mark.parametrize(
    ("source", "candidate", "reason"),
    [
        ("a ball", "The ball passes the ball.", "tautology 'the ball passes the ball'"),
        (
            "six children flying four kites on a windy hill",
            "Six children are flying four kites on a windy hill. The kite is flying a kite. The wind is blowing.",
            "tautology 'the kite is flying a kite'",
        ),
        (
            "a carrot",
            "A carrot is a sweet, edible fruit that is often used in cooking.",
            "a definition, not a scene: 'often used'",
        ),
        ("a shiba inu", "A shiba inu, a breed of dog known for its loyalty.", "a definition, not a scene: 'known for'"),
        (
            "a dog running on the beach",
            "A dog running on the beach. The dog is running on the beach.",
            "restates the prompt: 'The dog is running on the beach.'",
        ),
        (
            "two dogs play in the snow",
            "Two dogs play in the snow. The three dogs leap through white drifts under a grey sky.",
            "contradicts the prompt's count: 3 dog (asked 2)",
        ),
        (
            "a red car at night",
            "A red car at night. The sleek blue car glides past neon signs, its headlights cutting the dark.",
            "contradicts the prompt's colour: blue car (asked red)",
        ),
        (  # bench/quality.py, held-out line 38: the prompt's colour kept and another one put beside it
            "a yellow bicycle",
            "A yellow bicycle. A sleek, red yellow bicycle with a bright blue handlebar stands in a bustling street.",
            "contradicts the prompt's colour: red bicycle (asked yellow)",
        ),
        (
            "a cat on a sofa",
            "A cat on a sofa. The cat stretches its paws slowly, the cat stretches its paws slowly again.",
            "repetitive: the cat stretches its paws x2",
        ),
        ("a dog in a park", "A dog in a park. I hope you like this scene of a happy dog.", "chat artefact 'I hope'"),
    ],
)
def test_incoherent_rewrites_are_rejected_with_their_reason(source, candidate, reason):
    assert guards.check(source, candidate, max_words=200) == reason


@pytest.mark.parametrize(
    ("source", "candidate"),
    [
        (  # all_dimension.txt line 1 and its GPT-4o rewrite, with the prompt as the forced first sentence
            "In a still frame, a stop sign",
            "In a still frame, a stop sign. In a still frame, a weathered stop sign stands prominently at a quiet "
            "intersection, its red paint slightly faded and edges rusted. The sign is set against a backdrop of a "
            "serene suburban street, lined with tall, leafy trees whose branches gently sway in the breeze.",
        ),
        (
            "a dog chasing another dog",
            "A dog chasing another dog across a wet lawn, both tails wagging.",
        ),
        (
            "two red apples",
            "Two red apples. The two apples rest on a green cloth beside a white bowl.",
        ),
        (
            "Snow rocky mountains peaks canyon. snow blanketed rocky mountains surround and shadow deep canyons.",
            "Snow rocky mountains peaks canyon. snow blanketed rocky mountains surround and shadow deep canyons. "
            "Wind lifts fine powder off the ridges as the camera glides over the frozen gorge.",
        ),
    ],
)
def test_coherent_rewrites_pass(source, candidate):
    assert guards.check(source, candidate, max_words=200) is None


def test_sentences_a_video_cannot_show_are_dropped_but_never_the_prompt():
    text = (
        "The sound of a bell. A bell swings in a stone tower. The air is filled with the scent of rain. "
        "Pigeons scatter as you can hear it ring. Grey clouds drift behind the tower."
    )
    assert guards.drop_non_visual(text, keep="The sound of a bell.") == (
        "The sound of a bell. A bell swings in a stone tower. Grey clouds drift behind the tower."
    )
