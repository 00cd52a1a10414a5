import re

import pytest

from rapo.common import PromptError
from rapo.graph_db.backends import open_store
from rapo.tools.llm import Generation
from rapo.tools.retrieval import GraphLookup
from rapo.tools.stage1 import Stage1, Stage1Settings
from tests.graphs import build_small_graph
from tests.scripted import DistillLLM

# The guards and the plumbing alone: the verifier and the facets have their own tests (test_verifier, test_facets)
GUARDS_ONLY = {"verify": False, "facets": False}


class ScriptedLLM:
    """Answers each template with a fixed text, to drive the guards deterministically."""

    model_id, dtype = "scripted", "float32"

    def __init__(self, answers: dict[str, list[str]], adapter_id: str | None = None):
        self.answers = answers
        self.adapter_id = adapter_id
        self.calls: list[str] = []
        self.requests: list[list[dict]] = []

    def load(self):
        pass

    def plain(self):
        return self

    def generate(self, messages, seed, decoding):
        system = messages[0]["content"]
        self.requests.append(messages)
        step = next(k for k in self.answers if k in system)
        self.calls.append(step)
        answers = self.answers[step]
        text = answers[min(self.calls.count(step) - 1, len(answers) - 1)]
        return Generation(text=text, new_tokens=len(text.split()), seconds=0.0)

    def generate_many(self, conversations, seeds, decoding):
        decodings = decoding if isinstance(decoding, list) else [decoding] * len(conversations)
        return [self.generate(m, s, d) for m, s, d in zip(conversations, seeds, decodings, strict=True)]


@pytest.fixture
def lookup(tmp_path, embedder):
    return GraphLookup(open_store(build_small_graph(tmp_path / "g.sqlite", embedder)), embedder)


def test_guard_rejects_a_rewrite_that_drops_an_object_and_falls_back(lookup):
    llm = ScriptedLLM(
        {
            "Add the given detail": ["a cat running on the beach"],  # drops the dog: rejected twice
            "style of video captions": ["A dog runs on the beach."],
            "improve short": ["A brown dog runs happily along a wide sandy beach under a clear blue sky."],
        }
    )
    settings = Stage1Settings(max_modifiers=1, threshold=0.3, **GUARDS_ONLY)
    result = Stage1(lookup, llm, settings).run("a dog running on the beach", seed=0)
    merge_rejections = [r for r in result.rejected if r.step == "merge_modifier"]
    assert len(merge_rejections) == 2 and merge_rejections[0].reason == "drops 'dog'"
    assert result.merged == ["running along the shoreline"]
    rapo = next(c for c in result.candidates if c.branch == "rapo")
    # The refactor answer lacks the merged modifier, so the rapo branch falls back to the plain join.
    assert rapo.step == "augment" and rapo.text == "a dog running on the beach, running along the shoreline"
    assert {"dog", "beach"} <= set(re.findall(r"[a-z]+", result.prompt.lower()))
    assert result.why.startswith(f"chose {result.branch}")


def test_every_candidate_rejected_gives_back_the_prompt(lookup):
    llm = ScriptedLLM({"Add the given detail": ["Sure!"], "style of video captions": [""], "improve short": ["a cat"]})
    result = Stage1(lookup, llm, Stage1Settings(max_modifiers=0, **GUARDS_ONLY)).run("a dog running on the beach")
    assert result.prompt == "a dog running on the beach"
    assert [r.reason for r in result.rejected] == ["empty", "empty"] + ["drops 'dog', 'running', 'beach'"] * 2
    assert {c.step for c in result.candidates} == {"input"}


def test_the_distilled_rewriter_continues_the_prompt_and_weaves_in_the_modifier(lookup):
    rapo = "A brown dog races along the shoreline, waves breaking behind it as the camera tracks low beside it."
    naive = "A brown dog bounds over wet sand under a pale sky, ears flapping, filmed in a slow side-on shot."
    llm = DistillLLM([rapo], [naive])
    result = Stage1(lookup, llm, Stage1Settings(max_modifiers=1, threshold=0.3, **GUARDS_ONLY)).run(
        "a dog running on the beach"
    )
    # One request (the rapo branch passed, so no naive one), ending with the prompt as the forced answer start.
    assert len(llm.requests) == 1 and llm.requests[0][-1] == {
        "role": "assistant",
        "content": "A dog running on the beach.",
    }
    assert llm.requests[0][-2]["content"] == "a dog running on the beach\nInclude: running along the shoreline"
    assert [(c.branch, c.text) for c in result.candidates] == [("rapo", f"A dog running on the beach. {rapo}")]
    assert result.branch == "rapo" and result.merged == ["running along the shoreline"]

    # SSPO asks for both branches: its round 0 renders both
    both = Stage1(
        lookup,
        DistillLLM([rapo], [naive]),
        Stage1Settings(max_modifiers=1, threshold=0.3, both_branches=True, **GUARDS_ONLY),
    )
    assert [c.branch for c in both.run("a dog running on the beach").candidates] == ["rapo", "naive"]
    assert result.target.name == "wan" and result.models["templates"] == ["distill_rewrite@2"]
    assert result.rejected == []


def test_a_distilled_answer_that_ignores_the_modifier_or_repeats_itself_is_rejected(lookup):
    ignores = "A brown dog sits quietly on a towel."
    naive = ["The dog is running on the beach.", "Its paws kick up sand as gulls wheel overhead."]
    llm = DistillLLM([ignores], naive)
    settings = Stage1Settings(max_modifiers=1, threshold=0.3, weave_boost=2.0, **GUARDS_ONLY)
    result = Stage1(lookup, llm, settings).run("a dog running on the beach")
    reasons = [(r.step, r.reason) for r in result.rejected]
    assert reasons == [
        ("distill_rewrite:rapo", "does not add 'running along the shoreline'"),
        ("distill_rewrite:rapo", "does not add 'running along the shoreline'"),
        ("distill_rewrite:naive", "restates the prompt: 'The dog is running on the beach.'"),
    ]
    assert [c.branch for c in result.candidates] == ["naive"] and result.prompt.endswith(naive[1])
    # Only the rapo answers are nudged towards the modifier's words the prompt lacks, by the settings' boost
    assert [(d.boost_words, d.boost) for d in llm.decodings] == [(["shoreline"], 2.0)] * 2 + [([], 2.0)] * 2

    nothing = Stage1(lookup, DistillLLM(["Sure!"], ["Sure!", ""]), Stage1Settings(max_modifiers=0, **GUARDS_ONLY)).run(
        "a dog"
    )
    assert nothing.prompt == "a dog" and [c.step for c in nothing.candidates] == ["input"]
    assert [r.reason for r in nothing.rejected] == ["chat artefact 'Sure'", "adds nothing to the prompt"]


def test_the_target_profile_sets_the_length(lookup):
    sentences = " ".join(f"Shot {i} shows lamp{i} beside tree{i} and bench{i}." for i in range(20))  # 140 words
    for target, most in (("short", 35), ("wan", 100)):
        llm = DistillLLM([sentences], [sentences])
        result = Stage1(
            lookup, llm, Stage1Settings(max_modifiers=0, target=target, **GUARDS_ONLY, added_words=200)
        ).run("a dog")
        words = len(result.prompt.split())
        assert most - 10 < words <= most and result.prompt.endswith(".") and result.target.max_words == most


@pytest.mark.parametrize(("prompt", "message"), [("   ", "prompt is empty"), ("x" * 10_000, "10000 characters")])
def test_bad_prompts(lookup, prompt, message):
    with pytest.raises(PromptError, match=message):
        Stage1(lookup, ScriptedLLM({})).run(prompt)


@pytest.mark.slow
def test_real_model_keeps_the_subject_and_is_reproducible(lookup, llm):
    stage1 = Stage1(lookup, llm)
    first = stage1.run("a dog running on the beach", seed=7)
    words = first.prompt.lower()
    assert "dog" in words and "beach" in words
    again = stage1.run("a dog running on the beach", seed=7)
    assert again.prompt == first.prompt and again.candidates == first.candidates
    assert first.models["llm"] == "SmolLM2-135M-Instruct" and first.models["templates"]
    assert first.settings.decoding.max_new_tokens == 64
