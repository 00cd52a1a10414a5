"""The sentence verifier: what it splits, keeps and records, in Stage 1 and the reviser (mechanisms, not luck)."""

import json

import pytest

from rapo.common import ModelError
from rapo.graph_db.backends import open_store
from rapo.tools.retrieval import GraphLookup
from rapo.tools.revise import Attempt, PromptReviser
from rapo.tools.stage1 import Stage1, Stage1Settings
from rapo.tools.verifier import LABELS, SHIPPED, Verifier, added_sentences, sentences
from tests.graphs import build_small_graph
from tests.scripted import DistillLLM

PROMPT = "a dog running on the beach"
ANSWER = ("A brown dog runs along the wet sand. Waves roll in behind it. A crowd of people cheers at a concert. "
          "Waves roll in behind it.")  # fmt: skip


@pytest.fixture(scope="module")
def verifier():
    v = Verifier()
    v.load()
    return v


@pytest.fixture
def lookup(tmp_path, embedder):
    return GraphLookup(open_store(build_small_graph(tmp_path / "g.sqlite", embedder)), embedder)


def test_sentences_split_after_the_prompt():
    assert sentences("A dog runs. It jumps! Does it? 3 cats sit.") == ["A dog runs.", "It jumps!", "Does it?",
                                                                     "3 cats sit."]  # fmt: skip
    assert sentences("A dog runs. e.g. a cat") == ["A dog runs. e.g. a cat"]  # no split before lower case
    assert added_sentences("A dog.", "A dog. It runs. It stops.") == ["It runs.", "It stops."]
    assert added_sentences("A cat.", "A dog. It runs.") == ["A dog.", "It runs."]


def test_the_shipped_verifier_records_its_threshold_and_held_out_figures():
    config = json.loads((SHIPPED / "verifier.json").read_text())
    assert 0 < config["threshold"] < 1
    assert config["labels"] == list(LABELS)
    mine = config["held_out"]["rapo's sentences"]
    assert mine["sentences"] > 0 and mine["kept"] >= 1 and 0 <= mine["precision"] <= 1


def test_keep_passes_on_the_threshold_and_drops_repeats(verifier):
    prefix = "A dog running on the beach."
    text = f"{prefix} {ANSWER}"
    everything, dropped = verifier.keep(PROMPT, text, threshold=0.0)
    assert (
        everything == f"{prefix} A brown dog runs along the wet sand. Waves roll in behind it. A crowd of people "
        "cheers at a concert."
    )
    assert [(c.sentence, c.flaw) for c in dropped] == [("Waves roll in behind it.", "repeats")]

    nothing, dropped = verifier.keep(PROMPT, text, threshold=1.01)  # no probability reaches it
    assert nothing == prefix
    assert len(dropped) == 4 and all(c.flaw in LABELS[1:] and 0 <= c.p_ok <= 1 for c in dropped)

    checks = verifier.check(PROMPT, added_sentences(prefix, text))
    threshold = verifier.threshold()
    kept, _ = verifier.keep(PROMPT, text)
    assert kept == " ".join([prefix] + [c.sentence for c in checks[:3] if c.p_ok >= threshold])


def test_stage1_keeps_only_verified_sentences_and_records_the_rest(lookup, verifier):
    llm = DistillLLM(rapo=[ANSWER], naive=[ANSWER])
    every = Stage1(lookup, llm, Stage1Settings(verify_threshold=0.0, facets=False), verifier=verifier).run(PROMPT)
    assert every.prompt.startswith("A dog running on the beach. A brown dog") and every.models["verifier"]

    none = Stage1(lookup, llm, Stage1Settings(verify_threshold=1.0, facets=False), verifier=verifier).run(PROMPT)
    if all(
        c.p_ok < 1.0 for c in verifier.check(PROMPT, sentences(ANSWER))
    ):  # float32 softmax can round a sure sentence to exactly 1
        assert none.prompt == PROMPT and none.branch == "naive"
        assert "kept the prompt as written" in none.why
    verify = [r for r in none.rejected if r.step == "verify"]
    assert verify and all(r.reason.split(" ")[0] in LABELS[1:] + ("repeats",) for r in verify)

    plain = ["A brown dog runs along the wet sand. A crowd of people cheers at a concert."]  # no repeat to refuse
    off = Stage1(lookup, DistillLLM(plain, plain), Stage1Settings(verify=False)).run(PROMPT)
    assert off.models["verifier"] is None and not [r for r in off.rejected if r.step == "verify"]
    assert "A crowd of people" in off.prompt


def test_the_reviser_drops_what_the_verifier_does_not_pass(verifier):
    class Answers:
        model_id, dtype, adapter_id = "scripted", "float32", None

        def generate(self, messages, seed, decoding):
            from rapo.tools.llm import Generation

            text = "A dog running on the beach at sunset. A crowd of people cheers at a concert."
            return Generation(text=text, new_tokens=len(text.split()), seconds=0.0)

    reviser = PromptReviser(Answers(), verifier=verifier, verify_threshold=1.01)
    found, rejected = reviser.revise(PROMPT, [Attempt(prompt=PROMPT)], k=1, seed=0)
    assert found == []  # every sentence dropped: the prompt's words are gone, so the guards refuse what is left
    assert {r.step for r in rejected} == {"verify", "revise_prompt"}


def test_a_missing_verifier_is_one_line(tmp_path):
    with pytest.raises(ModelError, match="verifier not found"):
        Verifier(tmp_path / "nowhere").load()


def test_the_plain_model_keeps_its_first_sentence_and_verifies_the_rest(lookup, verifier):
    from tests.test_stage1 import ScriptedLLM

    rewrite = "A brown dog runs along a sandy beach. A crowd of people cheers at a concert."
    llm = ScriptedLLM(
        {"Add the given detail": [PROMPT], "style of video captions": [rewrite], "improve short": [rewrite]}
    )
    settings = Stage1Settings(max_modifiers=0, verify_threshold=1.0, facets=False)
    result = Stage1(lookup, llm, settings, verifier=verifier).run(PROMPT)
    dropped = [r.text for r in result.rejected if r.step == "verify"]
    assert dropped and all(not t.startswith("A brown dog") for t in dropped)  # the first sentence is never checked
    if "A crowd of people cheers at a concert." in dropped:  # unless float32 rounded its p(ok) to exactly 1
        assert all(c.text == "A brown dog runs along a sandy beach." for c in result.candidates if c.step == "naive")
