"""Turn typed phrases into a relation graph: dedupe, count co-occurrences, embed in batches, write once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from rapo.common import GraphFileError
from rapo.graph_db.backends import open_store
from rapo.graph_db.embeddings import EMBEDDING_DIM, Embedder
from rapo.graph_db.extract import extract_phrases
from rapo.graph_db.model import MODIFIER_KINDS, CaptionPhrases, Kind
from rapo.graph_db.neo4j_config import is_server_url
from rapo.graph_db.store import EdgeRow, GraphMeta, GraphSource, GraphStore, NodeRow

Progress = Callable[[int], None]


class GraphBuilder:
    """Accumulates captions' phrases in memory, then writes them to a store in one transaction.

    A caption contributes only when it has a scene and a modifier: a phrase no scene links to could
    never be retrieved. Node counts are captions mentioning the phrase; edge counts are captions
    mentioning both ends.
    """

    def __init__(self) -> None:
        self.nodes: Counter[tuple[Kind, str]] = Counter()
        self.edges: Counter[tuple[str, Kind, str]] = Counter()
        self.read = 0
        self.used = 0
        self.words = 0

    def add(self, phrases: CaptionPhrases, words: int = 0) -> None:
        """Count one caption's phrases; `words` is the caption's length, for the length target."""
        self.read += 1
        modifiers = [(kind, text) for kind in MODIFIER_KINDS for text in dict.fromkeys(phrases.of_kind(kind))]
        scenes = list(dict.fromkeys(phrases.scenes))
        if not scenes or not modifiers:
            return
        self.used += 1
        self.words += words
        self.nodes.update((Kind.SCENE, s) for s in scenes)
        self.nodes.update(modifiers)
        self.edges.update((s, kind, text) for s in scenes for kind, text in modifiers)

    def add_all(self, captions: Iterable[str], on_caption: Progress | None = None) -> None:
        """Extract and count the phrases of every caption; `on_caption` is called with 1 after each."""
        for caption in captions:
            self.add(extract_phrases(caption), words=len(caption.split()))
            if on_caption:
                on_caption(1)

    def write(
        self,
        store: GraphStore,
        embedder: Embedder,
        source: GraphSource,
        on_progress: Progress | None = None,
    ) -> GraphMeta:
        """Embed every distinct phrase once and write nodes, edges and merged metadata to `store`.

        Args:
            store: the graph to add to; counts add up with what it holds already.
            embedder: must be the embedder the store was built with.
            source: where these captions came from, appended to the graph's sources.
            on_progress: called with the number of phrases embedded after each batch.
        """
        old = _existing_meta(store)
        if old is not None and old.embedder != embedder.model_id:
            raise GraphFileError(
                f"graph {store.location} was built with embedder {old.embedder}, not {embedder.model_id}"
            )
        texts = sorted({text for _, text in self.nodes})  # a text of two kinds is embedded once
        vectors = dict(zip(texts, embedder.encode(texts, on_batch=on_progress), strict=True))
        nodes = [NodeRow(kind, text, count, vectors[text]) for (kind, text), count in sorted(self.nodes.items())]
        edges = [EdgeRow(s, kind, text, count) for (s, kind, text), count in sorted(self.edges.items())]
        captions = (old.captions if old else 0) + self.used
        old_words = old.caption_words_mean * old.captions if old else 0.0
        meta = GraphMeta(
            embedder=embedder.model_id,
            dim=EMBEDDING_DIM,
            captions=captions,
            caption_words_mean=round((old_words + self.words) / captions, 2) if captions else 0.0,
            sources=[*(old.sources if old else []), source.model_copy(update={"captions": self.used})],
        )
        store.write(nodes, edges, meta)
        return meta


def _existing_meta(store: GraphStore) -> GraphMeta | None:
    try:
        return store.meta()
    except GraphFileError:  # a new, empty graph; but not one that an interrupted copy left half-written
        if store.progress() is not None:
            raise
        return None


def build_graph(
    captions: Iterable[str],
    graph: str | Path,
    embedder: Embedder,
    source: GraphSource,
    on_caption: Progress | None = None,
    on_embed: Callable[[int], Progress] | None = None,
) -> GraphMeta:
    """Extract phrases from `captions` and add them to the graph `graph`, creating it if needed.

    A new graph file is written to a temporary file and renamed, and an existing one (or a Neo4j graph) is
    extended in one transaction, so an interrupted build leaves the graph as it was.

    Args:
        captions: caption texts.
        graph: the graph file, or a bolt:// or neo4j:// URL.
        embedder: the phrase embedder.
        source: provenance recorded in the graph.
        on_caption: called with 1 after each caption is read.
        on_embed: called with the number of distinct phrases once extraction is done; returns the
            callback that receives embedding progress.
    """
    builder = GraphBuilder()
    if is_server_url(graph):
        with open_store(graph, create=True) as store:  # an unreachable server fails before the captions are read
            builder.add_all(captions, on_caption)
            on_progress = on_embed(len({text for _, text in builder.nodes})) if on_embed else None
            return builder.write(store, embedder, source, on_progress)
    builder.add_all(captions, on_caption)
    graph = Path(graph)
    target = graph if graph.exists() else graph.with_name(graph.name + ".partial")
    if target != graph:
        target.unlink(missing_ok=True)  # left by an interrupted build
    store = open_store(target, create=True)
    try:
        on_progress = on_embed(len({text for _, text in builder.nodes})) if on_embed else None
        meta = builder.write(store, embedder, source, on_progress)
    finally:
        store.close()
    if target != graph:
        target.replace(graph)
    return meta
