import pytest

from rapo.graph_db.backends import open_store
from rapo.graph_db.model import Kind
from rapo.tools.retrieval import GraphLookup
from tests.graphs import build_small_graph


@pytest.fixture
def lookup(new_graph, embedder):  # every backend: a file, and the Neo4j test database when there is one
    with open_store(build_small_graph(new_graph, embedder)) as store:
        yield GraphLookup(store, embedder)


def test_modifiers_come_from_the_nearest_scenes_ranked_by_similarity(lookup):
    result = lookup.retrieve("a dog running on the beach", top_k=1, threshold=0.0)
    assert result.scenes[0][0] == "on a sandy beach"
    assert {m.scene for m in result.modifiers} == {"on a sandy beach"}
    scores = [m.score for m in result.modifiers]
    assert scores == sorted(scores, reverse=True)
    assert result.modifiers[0].text == "running along the shoreline"
    assert result.modifiers[0].kind == Kind.ACTION and result.modifiers[0].weight == 2


def test_threshold_and_top_k(lookup):
    everything = lookup.retrieve("a dog running on the beach", top_k=3, threshold=-1.0)
    assert len(everything.modifiers) == 12  # all modifiers of all three scenes
    strict = lookup.retrieve("a dog running on the beach", top_k=3, threshold=0.5)
    assert all(m.score >= 0.5 for m in strict.modifiers)
    assert len(strict.modifiers) < len(everything.modifiers)


def test_retrieval_is_deterministic(lookup):
    first = lookup.retrieve("a chef cooking dinner", top_k=2, threshold=0.0)
    for _ in range(3):
        again = lookup.retrieve("a chef cooking dinner", top_k=2, threshold=0.0)
        assert again.modifiers == first.modifiers and again.scenes == first.scenes


def test_a_modifier_the_prompt_already_says_is_skipped(lookup):
    result = lookup.retrieve("a dog building a sandcastle on a sandy beach", top_k=1, threshold=-1.0)
    assert "building a sandcastle" not in [m.text for m in result.modifiers]
