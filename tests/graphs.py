"""Small graphs for tests, built from records written here."""

from __future__ import annotations

from pathlib import Path

from rapo.graph_db.backends import open_store
from rapo.graph_db.builder import GraphBuilder
from rapo.graph_db.model import CaptionPhrases
from rapo.graph_db.store import GraphSource

RECORDS = [
    CaptionPhrases(
        scenes=("on a sandy beach",),
        actions=("running along the shoreline", "building a sandcastle"),
        atmospheres=("golden hour sunlight",),
        subjects=("a golden retriever",),
    ),
    CaptionPhrases(
        scenes=("on a sandy beach",),
        actions=("running along the shoreline",),
        atmospheres=("gentle sea breeze",),
    ),
    CaptionPhrases(
        scenes=("in a busy kitchen",),
        actions=("chopping onions", "stirring a pot of soup"),
        atmospheres=("warm light",),
        subjects=("a chef in a white apron",),
    ),
    CaptionPhrases(
        scenes=("on a city street at night",),
        actions=("driving past neon signs",),
        atmospheres=("wet asphalt reflecting lights",),
        subjects=("a red sports car",),
    ),
]


def build_small_graph(location: str | Path, embedder, records=RECORDS) -> str | Path:
    """Write `records` into the graph at `location` (a file or a Neo4j URL) and return the location."""
    builder = GraphBuilder()
    for record in records:
        builder.add(record, words=12)
    with open_store(location, create=True) as store:
        builder.write(store, embedder, GraphSource(location="tests", format="default", captions=0))
    return location
