import sqlite3

import numpy as np
import pytest

from rapo.common import GraphFileError
from rapo.graph_db.backends import open_store
from rapo.graph_db.model import Kind
from rapo.graph_db.store import EdgeRow, GraphMeta, NodeRow
from tests.graphs import RECORDS, build_small_graph

# The contract tests run against every backend: `new_graph` is a fresh file and, with a server, the Neo4j database.


@pytest.fixture
def graph(new_graph, embedder):
    return build_small_graph(new_graph, embedder)


@pytest.fixture
def store(graph):
    with open_store(graph) as opened:
        yield opened


def test_counts_dedupe_and_co_occurrence_weights(store):
    stats = store.stats()
    assert stats.nodes == {"scene": 3, "action": 5, "atmosphere": 4, "subject": 3}
    assert stats.meta.captions == 4 and stats.meta.caption_words_mean == 12
    neighbours, vectors = store.neighbours(["on a sandy beach"])
    weights = {n.node.text: n.weight for n in neighbours}
    assert weights["running along the shoreline"] == 2  # in two captions with the beach
    assert weights["building a sandcastle"] == 1
    assert vectors.shape == (len(neighbours), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_search_is_ranked_and_deterministic(store, graph, embedder):
    query = embedder.encode_one("a dog on the beach")
    hits = store.search(Kind.SCENE, query, 3)
    assert hits[0].node.text == "on a sandy beach"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    with open_store(graph) as again:
        assert hits == again.search(Kind.SCENE, query, 3)
    assert len(store.search(Kind.SCENE, query, 50)) == 3
    assert store.search(Kind.SCENE, query, 0) == []


def test_scores_are_cosines_and_ties_go_by_text(new_graph, embedder):
    beach = embedder.encode_one("on the beach")
    nodes = [NodeRow(Kind.SCENE, text, 1, beach) for text in ("on the beach b", "on the beach a", "on the beach c")]
    nodes.append(NodeRow(Kind.ACTION, "surfing", 1, embedder.encode_one("surfing")))
    edges = [EdgeRow(n.text, Kind.ACTION, "surfing", 1) for n in nodes[:3]]
    with open_store(new_graph, create=True) as store:
        store.write(nodes, edges, GraphMeta(embedder=embedder.model_id, dim=384))
        hits = store.search(Kind.SCENE, beach, 2)
        assert [h.node.text for h in hits] == ["on the beach a", "on the beach b"]
        assert all(abs(h.score - 1.0) < 1e-5 for h in hits)
        surfing = store.search(Kind.ACTION, beach, 1)[0]
        assert abs(surfing.score - float(embedder.encode_one("surfing") @ beach)) < 1e-5


def test_neighbours_are_ordered_by_scene_kind_text(store):
    neighbours, vectors = store.neighbours(["on a sandy beach", "in a busy kitchen", "nowhere at all"])
    keys = [(n.scene, n.node.kind.value, n.node.text) for n in neighbours]
    assert keys == sorted(keys) and len(keys) == 9
    assert vectors.shape == (9, 384)
    empty, none = store.neighbours([])
    assert empty == [] and none.shape == (0, 384)


def test_writing_again_adds_counts_in_one_transaction(graph, embedder):
    build_small_graph(graph, embedder, RECORDS[:1])
    with open_store(graph) as store:
        assert store.stats().meta.captions == 5
        neighbours, _ = store.neighbours(["on a sandy beach"])
        assert {n.node.text: n.weight for n in neighbours}["running along the shoreline"] == 3
        assert {n.node.text: n.node.count for n in neighbours}["running along the shoreline"] == 3
        assert len(store.stats().meta.sources) == 2
        assert store.stats().nodes == {"scene": 3, "action": 5, "atmosphere": 4, "subject": 3}


def test_put_sets_counts_so_writing_twice_changes_nothing(store):
    nodes = store.export_nodes(Kind.ACTION, "", 100)
    edges, last = store.export_edges("", 100)
    assert [n.text for n in nodes] == sorted(n.text for n in nodes) and len(nodes) == 5
    assert last == "on a sandy beach" and len(edges) == 12
    before = store.stats()
    for _ in range(2):
        store.put(nodes, edges, {"source": "test"})
    assert store.stats() == before
    assert store.progress() == {"source": "test"}
    store.finish(before.meta)
    assert store.progress() is None


def test_a_batch_naming_a_missing_node_writes_nothing(store, embedder):
    meta = store.meta()
    bad = [EdgeRow("on a sandy beach", Kind.ACTION, "no such action", 1)]
    node = NodeRow(Kind.ACTION, "a new action", 1, embedder.encode_one("a new action"))
    with pytest.raises((GraphFileError, sqlite3.IntegrityError)):
        store.write([node], bad, meta)
    assert store.stats().nodes["action"] == 5


def test_empty_graph_cannot_be_searched(new_graph):
    with open_store(new_graph, create=True) as store:
        with pytest.raises(GraphFileError, match="graph is empty"):
            store.meta()


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
