"""Read captions from TSV/CSV/JSONL and VBench prompt files, and the reference RAPO graph format."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rapo.common import InputFileError, read_lines
from rapo.graph_db.embeddings import EMBEDDING_DIM, Embedder
from rapo.graph_db.model import Kind, normalize_phrase
from rapo.graph_db.store import EdgeRow, GraphMeta, GraphSource, GraphStore, NodeRow

CAPTION_FORMATS = {".tsv": "captions-tsv", ".csv": "captions-csv", ".jsonl": "captions-jsonl", ".txt": "vbench-txt"}
_CAPTION_COLUMNS = ("caption", "text", "prompt", "Input")
csv.field_size_limit(1 << 24)


def caption_format(path: Path) -> str:
    """The format name of a caption file, from its extension."""
    try:
        return CAPTION_FORMATS[path.suffix.lower()]
    except KeyError:
        raise InputFileError(
            f"unknown caption file type: {path} (use .tsv, .csv, .jsonl or a .txt of one prompt per line)"
        ) from None


def read_captions(path: Path, where: dict[str, str] | None = None) -> Iterator[str]:
    """Yield the captions in `path`, skipping blank ones.

    A TSV or CSV file needs a header with a `caption`, `text`, `prompt` or `Input` column; a JSONL
    file has one object per line with one of those keys; a .txt file has one caption per line.

    Args:
        path: the caption file.
        where: keep only rows whose columns (TSV, CSV) or keys (JSONL) have these values,
            e.g. {"modality": "video"}.
    """
    fmt = caption_format(path)
    where = where or {}
    lines = read_lines(path)
    if fmt == "vbench-txt":
        if where:
            raise InputFileError(f"{path}: a .txt prompt file has no columns to filter on")
        yield from (text.strip() for _, text in lines if text.strip())
    elif fmt == "captions-jsonl":
        for number, text in lines:
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputFileError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
            caption = _pick(row, path, number) if isinstance(row, dict) else None
            if caption is None:
                raise InputFileError(f"{path}:{number}: expected an object with a 'caption' key")
            if all(str(row.get(k)) == v for k, v in where.items()) and caption.strip():
                yield caption.strip()
    else:
        reader = csv.DictReader((text for _, text in lines), delimiter="\t" if fmt == "captions-tsv" else ",")
        header = reader.fieldnames or []
        if not any(c in header for c in _CAPTION_COLUMNS):
            raise InputFileError(f"{path}:1: header has no caption column (one of {', '.join(_CAPTION_COLUMNS)})")
        if missing := [k for k in where if k not in header]:
            raise InputFileError(f"{path}:1: cannot filter on missing column(s) {', '.join(missing)}")
        for row in reader:
            caption = _pick(row, path, reader.line_num)
            if caption and all(row.get(k) == v for k, v in where.items()) and caption.strip():
                yield caption.strip()


def _pick(row: dict, path: Path, number: int) -> str | None:
    for column in _CAPTION_COLUMNS:
        if column in row:
            value = row[column]
            if value is not None and not isinstance(value, str):
                raise InputFileError(f"{path}:{number}: '{column}' is not text")
            return value
    return None


# The reference code's construct_graph.py writes these files; its scenario words are our atmospheres.
_RAPO_KINDS = {"place": Kind.SCENE, "verb": Kind.ACTION, "scenario": Kind.ATMOSPHERE}
_RAPO_EMBEDS = {"place": "place_embed", "verb": "verb_words_embed", "scenario": "scenario_words_embed"}
_RAPO_GRAPHS = {"verb": "graph_place_verb.graphml", "scenario": "graph_place_scene.graphml"}
_GRAPHML = "{http://graphml.graphdrawing.org/xmlns}"


def _load_json(path: Path) -> object:
    if not path.is_file():
        raise InputFileError(f"reference graph file missing: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not valid UTF-8 JSON ({exc})") from None


def import_rapo(folder: Path, store: GraphStore, embedder: Embedder) -> GraphMeta:
    """Import a graph written by the reference code's `construct_graph.py` into `store`.

    Reads `{place,verb,scenario}_to_idx.json`, `*_in_sentence.json`, the `*_embed.json` vectors,
    `data_info.json` and the place–verb / place–scenario GraphML files. Edge weights are the number
    of sentences both phrases occur in (the reference graph itself stores none). The stored vectors
    are reused when they match this embedder on a sample; otherwise every phrase is embedded again.
    """
    if not folder.is_dir():
        raise InputFileError(f"reference graph folder not found: {folder}")
    info = _load_json(folder / "data_info.json")
    phrases: dict[str, list[str]] = {}
    sentences: dict[str, dict[str, set[int]]] = {}
    vectors: dict[str, np.ndarray] = {}
    for name in _RAPO_KINDS:
        to_idx = _load_json(folder / f"{name}_to_idx.json")
        in_sentence = _load_json(folder / f"{name}_in_sentence.json")
        embeds = np.asarray(_load_json(folder / f"{_RAPO_EMBEDS[name]}.json"), dtype=np.float32)
        if not isinstance(to_idx, dict) or not isinstance(in_sentence, dict):
            raise InputFileError(f"{folder / f'{name}_to_idx.json'}: expected a JSON object of phrase -> index")
        if embeds.ndim != 2 or embeds.shape != (len(to_idx), EMBEDDING_DIM):
            raise InputFileError(
                f"{folder / f'{_RAPO_EMBEDS[name]}.json'}: expected {len(to_idx)} vectors of {EMBEDDING_DIM}, "
                f"found shape {embeds.shape}"
            )
        ordered = sorted(to_idx, key=to_idx.__getitem__)
        phrases[name] = ordered
        sentences[name] = {p: set(in_sentence.get(p, [])) for p in ordered}
        vectors[name] = embeds[[to_idx[p] for p in ordered]]  # rows in index order
    vectors = _check_vectors(phrases, vectors, embedder)

    nodes = [
        NodeRow(_RAPO_KINDS[name], normalize_phrase(p), max(1, len(sentences[name][p])), vec / np.linalg.norm(vec))
        for name in _RAPO_KINDS
        for p, vec in zip(phrases[name], vectors[name], strict=True)
        if normalize_phrase(p)
    ]
    edges = []
    for name, graph in _RAPO_GRAPHS.items():
        for place, modifier in _graphml_edges(folder / graph, set(phrases["place"]), set(phrases[name])):
            weight = len(sentences["place"][place] & sentences[name][modifier]) or 1
            edges.append(EdgeRow(normalize_phrase(place), _RAPO_KINDS[name], normalize_phrase(modifier), weight))
    known = {(n.kind, n.text) for n in nodes}  # a phrase that normalises to nothing was dropped, so are its edges
    edges = [e for e in edges if (Kind.SCENE, e.scene) in known and (e.kind, e.text) in known]
    nodes, edges = _merge_duplicates(nodes, edges)
    captions = int(info.get("valid_sentence", 0)) if isinstance(info, dict) else 0
    meta = GraphMeta(
        embedder=embedder.model_id,
        dim=EMBEDDING_DIM,
        captions=captions,
        sources=[GraphSource(location=str(folder), format="rapo", captions=captions)],
    )
    store.write(nodes, edges, meta)
    return meta


def _check_vectors(
    phrases: dict[str, list[str]], vectors: dict[str, np.ndarray], embedder: Embedder
) -> dict[str, np.ndarray]:
    """Keep the reference vectors if they are this embedder's (checked on a sample), else re-embed."""
    sample = [(name, i) for name in phrases for i in range(min(4, len(phrases[name])))]
    if not sample:
        return vectors
    ours = embedder.encode([phrases[name][i] for name, i in sample])
    theirs = np.stack([vectors[name][i] / np.linalg.norm(vectors[name][i]) for name, i in sample])
    if float(np.min(np.sum(ours * theirs, axis=1))) > 0.99:
        return vectors
    return {name: embedder.encode(phrases[name]) for name in phrases}


def _graphml_edges(path: Path, places: set[str], modifiers: set[str]) -> Iterator[tuple[str, str]]:
    """Yield (place, modifier) pairs from an undirected GraphML file, whichever end was written first."""
    if not path.is_file():
        raise InputFileError(f"reference graph file missing: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputFileError(f"{path}: not valid GraphML ({exc})") from None
    for edge in root.iter(f"{_GRAPHML}edge"):
        a, b = edge.get("source"), edge.get("target")
        if a in places and b in modifiers:
            yield a, b
        elif b in places and a in modifiers:
            yield b, a
        else:
            raise InputFileError(f"{path}: edge {a!r} -- {b!r} joins phrases missing from the *_to_idx files")


def _merge_duplicates(nodes: list[NodeRow], edges: list[EdgeRow]) -> tuple[list[NodeRow], list[EdgeRow]]:
    """Phrases that differ only in case or spacing become one node, their counts summed."""
    merged_nodes: dict[tuple[Kind, str], NodeRow] = {}
    for n in nodes:
        key = (n.kind, n.text)
        if key in merged_nodes:
            n = NodeRow(n.kind, n.text, n.count + merged_nodes[key].count, merged_nodes[key].embedding)
        merged_nodes[key] = n
    merged_edges: dict[tuple[str, Kind, str], EdgeRow] = {}
    for e in edges:
        key = (e.scene, e.kind, e.text)
        if key in merged_edges:
            e = EdgeRow(e.scene, e.kind, e.text, e.count + merged_edges[key].count)
        merged_edges[key] = e
    return list(merged_nodes.values()), list(merged_edges.values())
