"""Facets: only the kinds the prompt is silent on, within the length bound, recorded in Stage 1's result."""

from rapo.graph_db.backends import open_store
from rapo.tools.facets import FACETS, facets_for, with_facets
from rapo.tools.retrieval import GraphLookup
from rapo.tools.stage1 import Stage1, Stage1Settings
from tests.graphs import build_small_graph
from tests.scripted import DistillLLM


def names(prompt):
    return [f.name for f in facets_for(prompt)]


def test_a_prompt_that_speaks_to_a_kind_gets_no_facet_of_it():
    assert names("a dog running on the beach") == ["camera", "light", "look", "motion"]
    assert names("a dog running on the beach at night") == ["camera", "look", "motion"]
    assert names("The bund Shanghai, surrealism style") == ["camera"]
    assert names("The camera pans across a city, in Van Gogh style") == []  # a style owns light and motion too
    assert names("A still tableau of a bench, close-up, sunset, oil painting") == []


def test_facets_stay_within_the_length_bound():
    text, added = with_facets("A dog runs", "a dog runs", max_words=3 + len(FACETS[0].sentence.split()))
    assert added == ["camera"] and text == f"A dog runs. {FACETS[0].sentence}"
    assert with_facets("A dog runs.", "a dog runs", max_words=3) == ("A dog runs.", [])


def test_stage1_appends_and_records_the_facets(tmp_path, embedder):
    lookup = GraphLookup(open_store(build_small_graph(tmp_path / "g.sqlite", embedder)), embedder)
    answer = ["A brown dog runs along the wet sand."]
    on = Stage1(lookup, DistillLLM(answer, answer), Stage1Settings(verify=False)).run("a dog running on the beach")
    assert on.facets == ["camera", "light", "look", "motion"]
    assert on.prompt.endswith(" ".join(f.sentence for f in FACETS))
    assert all(c.text.endswith(FACETS[-1].sentence) for c in on.candidates)
    off = Stage1(lookup, DistillLLM(answer, answer), Stage1Settings(verify=False, facets=False)).run(
        "a dog running on the beach"
    )
    assert off.facets == [] and off.prompt == "A dog running on the beach. A brown dog runs along the wet sand."
