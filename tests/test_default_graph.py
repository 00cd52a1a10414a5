"""Tests for the default relation graph shipped in graph_db/default_graph.json."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest

from rapo.graph_db import default_graph
from rapo.graph_db.default_graph import DEFAULT_GRAPH_VERSION, default_records
from rapo.graph_db.model import CaptionPhrases, Kind, normalize_phrase

COVERAGE_WORDS = (
    "dog cat horse bird fish car train boat airplane bicycle city beach ocean forest mountain "
    "desert river snow rain sunset night kitchen food football surfing skiing dance guitar child"
).split()


@pytest.fixture(scope="module")
def records() -> list[CaptionPhrases]:
    return default_records()


def _all_phrases(records: list[CaptionPhrases]) -> list[str]:
    return [p for r in records for kind in Kind for p in r.of_kind(kind)]


def test_json_loads_as_a_list_of_records() -> None:
    text = resources.files("rapo.graph_db").joinpath("default_graph.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert isinstance(data, list)
    assert all(set(r) == {"scene", "actions", "atmospheres", "subjects"} for r in data)
    assert isinstance(DEFAULT_GRAPH_VERSION, int) and DEFAULT_GRAPH_VERSION >= 1


def test_at_least_100_distinct_scenes(records: list[CaptionPhrases]) -> None:
    scenes = [r.scenes for r in records]
    assert all(len(s) == 1 for s in scenes)
    assert len(records) >= 100
    assert len({s[0] for s in scenes}) == len(records)


def test_every_record_has_enough_modifiers(records: list[CaptionPhrases]) -> None:
    for r in records:
        assert len(r.actions) >= 4, r.scenes
        assert len(r.atmospheres) >= 3, r.scenes
        assert len(r.subjects) >= 3, r.scenes


def test_phrases_normalized_non_empty_and_unique_per_record(records: list[CaptionPhrases]) -> None:
    for r in records:
        for kind in Kind:
            phrases = r.of_kind(kind)
            assert len(set(phrases)) == len(phrases), (r.scenes, kind)
            for p in phrases:
                assert p and normalize_phrase(p) == p, (r.scenes, p)


def test_phrase_shapes(records: list[CaptionPhrases]) -> None:
    for r in records:
        assert all(2 <= len(p.split()) <= 6 and p.split()[0].endswith("ing") for p in r.actions), r.scenes
        assert all(1 <= len(p.split()) <= 5 for p in r.atmospheres + r.subjects), r.scenes


@pytest.mark.parametrize("word", COVERAGE_WORDS)
def test_category_coverage(records: list[CaptionPhrases], word: str) -> None:
    pattern = re.compile(rf"\b{word}(s|es)?\b")
    assert any(pattern.search(p) for p in _all_phrases(records)), word


def test_bad_records_raise_with_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    good = {"scene": "on a beach", "actions": ["running"], "atmospheres": [], "subjects": []}
    cases = [
        [good, {"actions": ["running"]}],
        [good, {"scene": "  ", "actions": []}],
        [good, {"scene": "in a park", "subjects": ["a dog", " . "]}],
    ]
    for data in cases:
        (tmp_path / "default_graph.json").write_text(json.dumps(data), encoding="utf-8")
        monkeypatch.setattr(default_graph.resources, "files", lambda _pkg: tmp_path)
        with pytest.raises(ValueError, match="record 1"):
            default_records()
