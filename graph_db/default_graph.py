"""The default relation graph a new user gets on the first run.

The records live in ``default_graph.json`` inside the ``graph_db`` package. They were
written for this project (no third-party caption data): each record is one place phrase
(the scene) with the actions, atmospheres and subjects that naturally go with it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from rapo.common import rapo_home
from rapo.graph_db.builder import GraphBuilder
from rapo.graph_db.embeddings import Embedder
from rapo.graph_db.model import CaptionPhrases, normalize_phrase
from rapo.graph_db.sqlite_store import SQLiteGraphStore
from rapo.graph_db.store import GraphSource

DEFAULT_GRAPH_VERSION: int = 1
"""Version of ``default_graph.json``; bump it whenever the JSON changes."""

_RESOURCE = "default_graph.json"
_MODIFIER_FIELDS: tuple[str, ...] = ("actions", "atmospheres", "subjects")


def _phrases(record: dict[str, Any], field: str, index: int) -> tuple[str, ...]:
    """Normalize one list of phrases of a record.

    Args:
        record: The raw JSON record.
        field: The key of the phrase list ("actions", "atmospheres" or "subjects").
        index: The record's position in the file, for error messages.

    Returns:
        The normalized phrases, in file order.

    Raises:
        ValueError: If the field is not a list of strings or a phrase is empty.
    """
    raw = record.get(field, [])
    if not isinstance(raw, list):
        raise ValueError(f"default graph record {index}: {field!r} is not a list")
    phrases = []
    for item in raw:
        phrase = normalize_phrase(item) if isinstance(item, str) else ""
        if not phrase:
            raise ValueError(f"default graph record {index}: empty phrase in {field!r}")
        phrases.append(phrase)
    return tuple(phrases)


def default_records() -> list[CaptionPhrases]:
    """Load the default graph shipped with the package.

    Returns:
        One ``CaptionPhrases`` per record, holding its one scene and its modifiers,
        every phrase passed through ``normalize_phrase``.

    Raises:
        ValueError: If the file is not a list of records, or a record (named by its
            index) lacks a scene or has an empty phrase.
    """
    text = resources.files("rapo.graph_db").joinpath(_RESOURCE).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("default graph: expected a JSON list of records")
    records = []
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise ValueError(f"default graph record {index}: not an object")
        scene = record.get("scene")
        scene = normalize_phrase(scene) if isinstance(scene, str) else ""
        if not scene:
            raise ValueError(f"default graph record {index}: missing scene")
        actions, atmospheres, subjects = (_phrases(record, f, index) for f in _MODIFIER_FIELDS)
        records.append(CaptionPhrases(scenes=(scene,), actions=actions, atmospheres=atmospheres, subjects=subjects))
    return records


def default_graph_path(embedder: Embedder) -> Path:
    """The default graph in `$RAPO_HOME/graphs`, built from the shipped records on first use (about a second)."""
    path = rapo_home() / "graphs" / f"default-v{DEFAULT_GRAPH_VERSION}.sqlite"
    if path.is_file():
        return path
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    builder = GraphBuilder()
    for record in default_records():
        builder.add(record)
    store = SQLiteGraphStore(partial, create=True)
    try:
        builder.write(store, embedder, GraphSource(location="rapo default graph", format="default", captions=0))
    finally:
        store.close()
    partial.replace(path)  # atomic: a killed first run leaves no half-built default graph
    return path
