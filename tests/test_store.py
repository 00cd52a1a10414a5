import sqlite3

import numpy as np
import pytest

from graph_db.errors import GraphFileError
from graph_db.model import Kind
from graph_db.store import open_store
from tests.graphs import RECORDS, build_small_graph


@pytest.fixture
def graph(tmp_path, embedder):
    return build_small_graph(tmp_path / "g.sqlite", embedder)


def test_counts_dedupe_and_co_occurrence_weights(graph):
    store = open_store(graph)
    stats = store.stats()
    assert stats.nodes == {"scene": 3, "action": 5, "atmosphere": 4, "subject": 3}
    assert stats.meta.captions == 4 and stats.meta.caption_words_mean == 12
    neighbours, vectors = store.neighbours(["on a sandy beach"])
    weights = {n.node.text: n.weight for n in neighbours}
    assert weights["running along the shoreline"] == 2  # in two captions with the beach
    assert weights["building a sandcastle"] == 1
    assert vectors.shape == (len(neighbours), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_search_is_ranked_and_deterministic(graph, embedder):
    store = open_store(graph)
    query = embedder.encode_one("a dog on the beach")
    hits = store.search(Kind.SCENE, query, 3)
    assert hits[0].node.text == "on a sandy beach"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits == open_store(graph).search(Kind.SCENE, query, 3)
    assert len(store.search(Kind.SCENE, query, 50)) == 3


def test_writing_again_adds_counts_in_one_transaction(graph, embedder):
    build_small_graph(graph, embedder, RECORDS[:1])
    store = open_store(graph)
    assert store.stats().meta.captions == 5
    neighbours, _ = store.neighbours(["on a sandy beach"])
    assert {n.node.text: n.weight for n in neighbours}["running along the shoreline"] == 3
    assert len(store.stats().meta.sources) == 2


def test_missing_graph_file(tmp_path):
    with pytest.raises(GraphFileError, match="graph file not found"):
        open_store(tmp_path / "nope.sqlite")


def test_corrupt_graph_file(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GraphFileError, match="not a readable rapo graph"):
        open_store(bad)


def test_sqlite_file_that_is_not_a_graph(tmp_path):
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).executescript("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
    with pytest.raises(GraphFileError, match="not a readable rapo graph"):
        open_store(other)


def test_empty_graph_cannot_be_searched(tmp_path):
    store = open_store(tmp_path / "new.sqlite", create=True)
    with pytest.raises(GraphFileError, match="graph is empty"):
        store.meta()
