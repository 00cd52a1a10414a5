"""Build a graph from a slice of the real caption corpus in ../shared/data (skipped where it is absent)."""

from itertools import islice

from rapo.graph_db.backends import open_store
from rapo.graph_db.builder import build_graph
from rapo.graph_db.importers import read_captions
from rapo.graph_db.model import Kind
from rapo.graph_db.store import GraphSource
from rapo.tools.retrieval import GraphLookup
from tests.conftest import shared_data


def test_build_from_video_captions(tmp_path, embedder):
    corpus = shared_data("captions", "combined_captions.tsv")
    captions = list(islice(read_captions(corpus, {"modality": "video"}), 1500))
    graph = tmp_path / "video.sqlite"
    meta = build_graph(captions, graph, embedder, GraphSource(location=str(corpus), format="captions-tsv", captions=0))
    assert 0.2 * len(captions) < meta.captions <= len(captions)  # short captions often name no place
    assert 5 < meta.caption_words_mean < 30
    store = open_store(graph)
    stats = store.stats()
    assert all(stats.nodes[k] > 20 for k in ("scene", "action", "subject")), stats.nodes
    result = GraphLookup(store, embedder).retrieve("a man cooking food in a kitchen", top_k=3, threshold=0.3)
    assert any("kitchen" in scene for scene, _ in result.scenes), result.scenes
    assert result.modifiers and all(m.kind in (Kind.ACTION, Kind.ATMOSPHERE, Kind.SUBJECT) for m in result.modifiers)
