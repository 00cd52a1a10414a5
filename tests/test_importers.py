import json

import networkx as nx
import numpy as np
import pytest

from rapo.common import InputFileError
from rapo.graph_db.backends import open_store
from rapo.graph_db.importers import import_rapo, read_captions
from rapo.graph_db.model import Kind


def test_tsv_with_filter(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("source\tmodality\tcaption\nx\tvideo\ta man rides a horse\ny\timage\ta cat\nz\tvideo\t \n")
    assert list(read_captions(path, {"modality": "video"})) == ["a man rides a horse"]
    assert list(read_captions(path)) == ["a man rides a horse", "a cat"]


def test_csv_jsonl_and_txt(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text('Input,Output\n"a woman, smiling, on a stage",x\n')
    assert list(read_captions(csv)) == ["a woman, smiling, on a stage"]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"caption": "a dog in a park", "split": "train"}\n\n{"caption": "a bird", "split": "test"}\n')
    assert list(read_captions(jsonl, {"split": "train"})) == ["a dog in a park"]
    txt = tmp_path / "all_dimension.txt"
    txt.write_text("a person swimming in ocean\n\na cat eating food\n")
    assert list(read_captions(txt)) == ["a person swimming in ocean", "a cat eating food"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.tsv", b"caption\nfine\n\xff\xfe broken\n", "bad.tsv:3: not UTF-8"),
        ("bad.jsonl", b'{"caption": "ok"}\n{not json\n', "bad.jsonl:2: not a JSON object"),
        ("bad2.jsonl", b'{"text2": "ok"}\n', "bad2.jsonl:1: expected an object with a 'caption' key"),
        ("nocol.csv", b"a,b\n1,2\n", "nocol.csv:1: header has no caption column"),
        ("c.xlsx", b"", "unknown caption file type"),
    ],
)
def test_bad_caption_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message):
        list(read_captions(path))


def test_missing_caption_file(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        list(read_captions(tmp_path / "none.tsv"))


def write_reference_graph(folder, embedder):
    """Write a graph the way the reference construct_graph.py does (json.dump + networkx GraphML)."""
    rows = [  # (verbs, scenarios, places) per valid sentence
        (["running along the shore"], ["peaceful"], ["on a beach"]),
        (["running along the shore", "jumping"], ["windy"], ["on a beach"]),
        (["chopping onions"], ["warm light"], ["in a kitchen"]),
    ]
    kinds = {"verb": {}, "scenario": {}, "place": {}}
    in_sentence = {"verb": {}, "scenario": {}, "place": {}}
    g_verb, g_scene = nx.Graph(), nx.Graph()
    for i, (verbs, scenarios, places) in enumerate(rows):
        for p in places:
            for name, words, graph in (("scenario", scenarios, g_scene), ("verb", verbs, g_verb)):
                for w in words:
                    kinds[name].setdefault(w, len(kinds[name]))
                    in_sentence[name].setdefault(w, []).append(i)
                    graph.add_edge(p, w)
            kinds["place"].setdefault(p, len(kinds["place"]))
            in_sentence["place"].setdefault(p, []).append(i)
    folder.mkdir()
    embeds = {"verb": "verb_words_embed", "scenario": "scenario_words_embed", "place": "place_embed"}
    for name in kinds:
        (folder / f"{name}_to_idx.json").write_text(json.dumps(kinds[name], indent=4))
        (folder / f"{name}_in_sentence.json").write_text(json.dumps(in_sentence[name], indent=4))
        words = sorted(kinds[name], key=kinds[name].get)
        (folder / f"{embeds[name]}.json").write_text(json.dumps(embedder.encode(words).tolist()))
    (folder / "data_info.json").write_text(json.dumps({"valid_sentence": 3, "p_idx": 2, "s_idx": 3, "v_idx": 3}))
    nx.write_graphml(g_verb, folder / "graph_place_verb.graphml")
    nx.write_graphml(g_scene, folder / "graph_place_scene.graphml")


def test_import_reference_format(tmp_path, embedder):
    write_reference_graph(tmp_path / "ref", embedder)
    store = open_store(tmp_path / "g.sqlite", create=True)
    meta = import_rapo(tmp_path / "ref", store, embedder)
    assert meta.captions == 3 and meta.sources[0].format == "rapo"
    stats = store.stats()
    assert stats.nodes == {"scene": 2, "action": 3, "atmosphere": 3, "subject": 0}
    assert stats.edges == {"action": 3, "atmosphere": 3, "subject": 0}
    neighbours, vectors = store.neighbours(["on a beach"])
    weights = {(n.node.kind, n.node.text): n.weight for n in neighbours}
    assert weights[(Kind.ACTION, "running along the shore")] == 2  # co-occurs in sentences 0 and 1
    assert weights[(Kind.ATMOSPHERE, "windy")] == 1
    expected = embedder.encode([n.node.text for n in neighbours])
    assert np.allclose(vectors, expected, atol=1e-5)
    hits = store.search(Kind.SCENE, embedder.encode_one("a dog on the beach"), 1)
    assert hits[0].node.text == "on a beach"


def test_import_reference_format_errors(tmp_path, embedder):
    write_reference_graph(tmp_path / "ref", embedder)
    (tmp_path / "ref" / "verb_words_embed.json").write_text("[[0.1, 0.2]]")
    store = open_store(tmp_path / "g.sqlite", create=True)
    with pytest.raises(InputFileError, match="verb_words_embed.json: expected 3 vectors of 384"):
        import_rapo(tmp_path / "ref", store, embedder)
    (tmp_path / "ref" / "place_to_idx.json").write_text("{broken")
    with pytest.raises(InputFileError, match="place_to_idx.json: not valid UTF-8 JSON"):
        import_rapo(tmp_path / "ref", store, embedder)
    with pytest.raises(InputFileError, match="reference graph folder not found"):
        import_rapo(tmp_path / "missing", store, embedder)
