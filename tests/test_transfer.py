"""Copying whole graphs: file to file, push to and pull from Neo4j; resumable, idempotent, verified."""

import json
import os
import subprocess
import sys

import pytest

import rapo.graph_db.transfer as transfer
from rapo.common import GraphCopyError, GraphFileError
from rapo.graph_db.backends import open_store
from rapo.graph_db.model import CaptionPhrases, Kind
from rapo.graph_db.sqlite_store import SQLiteGraphStore
from rapo.graph_db.transfer import copy_graph
from rapo.tools.retrieval import GraphLookup
from tests.graphs import RECORDS, build_small_graph

RAPO = [sys.executable, "-m", "rapo"]
PROMPTS = ["a dog running on the beach", "a chef cooking dinner", "a red car at night"]


def rapo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RAPO, *args], capture_output=True, text=True, timeout=600, env=os.environ.copy())


def everything(store) -> tuple[list, list]:
    """Every node (with its count and vector) and every edge, in a comparable form."""
    nodes = [(n.kind, n.text, n.count, n.embedding.tobytes()) for k in Kind for n in store.export_nodes(k, "", 10**6)]
    edges, _ = store.export_edges("", 10**6)
    return sorted(nodes), sorted((e.scene, e.kind, e.text, e.count) for e in edges)


def retrievals(store, embedder) -> list:
    lookup = GraphLookup(store, embedder)
    return [lookup.retrieve(p, 3, 0.0).model_dump(exclude={"seconds"}) for p in PROMPTS]


@pytest.fixture
def source(tmp_path, embedder):
    return build_small_graph(tmp_path / "source.sqlite", embedder)


def test_copy_file_to_file_then_again_changes_nothing(source, tmp_path, embedder):
    with open_store(source) as src, open_store(tmp_path / "copy.sqlite", create=True) as dst:
        report = copy_graph(src, dst)
        assert (report.nodes, report.edges, report.up_to_date) == (15, 12, False)
        assert everything(dst) == everything(src) and dst.meta() == src.meta()
        assert retrievals(dst, embedder) == retrievals(src, embedder)
        again = copy_graph(src, dst)
        assert again.up_to_date and everything(dst) == everything(src)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def test_an_interrupted_copy_resumes_where_it_stopped(backend, source, tmp_path, monkeypatch, request):
    target = tmp_path / "copy.sqlite" if backend == "sqlite" else request.getfixturevalue("empty_neo4j")
    monkeypatch.setattr(transfer, "NODES_PER_BATCH", 2)
    monkeypatch.setattr(transfer, "EDGES_PER_BATCH", 2)
    written = []

    def kill_after_five_batches(n: int) -> None:
        written.append(n)
        if len(written) == 5:
            raise KeyboardInterrupt  # what a kill leaves: every batch before it committed, none after

    with open_store(source) as src:
        with open_store(target, create=True) as dst, pytest.raises(KeyboardInterrupt):
            copy_graph(src, dst, on_progress=kill_after_five_batches)
        with open_store(target, create=True) as dst:
            with pytest.raises(GraphFileError, match="incomplete"):
                dst.meta()
            assert dst.progress()["rows"] == sum(written)
            resumed = []
            report = copy_graph(src, dst, on_progress=resumed.append)
            assert report.resumed and resumed[0] == sum(written)  # the bar starts where the killed copy stopped
            assert sum(resumed) == 27 and report.rows == 27 - sum(written)
            assert everything(dst) == everything(src)  # no count was added twice
            assert dst.progress() is None and dst.meta() == src.meta()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def test_another_graph_is_only_overwritten_with_replace(backend, source, tmp_path, embedder, request):
    target = tmp_path / "other.sqlite" if backend == "sqlite" else request.getfixturevalue("empty_neo4j")
    build_small_graph(target, embedder, RECORDS[2:])
    with open_store(source) as src, open_store(target, create=True) as dst:
        with pytest.raises(GraphCopyError, match="already holds another graph.*--replace"):
            copy_graph(src, dst)
        assert dst.stats().nodes["scene"] == 2
        copy_graph(src, dst, replace=True)
        assert everything(dst) == everything(src)


class LosesAnEdge(SQLiteGraphStore):
    def put(self, nodes, edges, progress):
        super().put(nodes, [e for e in edges if e.text != "gentle sea breeze"], progress)


def test_counts_that_do_not_match_are_reported(source, tmp_path):
    with open_store(source) as src, LosesAnEdge(tmp_path / "copy.sqlite", create=True) as dst:
        with pytest.raises(GraphCopyError, match=r"atmosphere edges: 3 in .*copy.sqlite, 4 in source"):
            copy_graph(src, dst)


@pytest.mark.neo4j
def test_push_then_pull_round_trips(source, tmp_path, empty_neo4j, embedder):
    push = rapo("graph", "push", str(source), empty_neo4j)
    assert push.returncode == 0, push.stderr
    assert "wrote 27 rows" in push.stderr and "holds 15 nodes and 12 edges, as its source does" in push.stderr
    again = rapo("graph", "push", str(source), empty_neo4j)
    assert again.returncode == 0 and "already holds this graph: nothing to do" in again.stderr

    pulled = tmp_path / "pulled.sqlite"
    pull = rapo("graph", "pull", empty_neo4j, str(pulled))
    assert pull.returncode == 0, pull.stderr
    assert not pulled.with_name("pulled.sqlite.partial").exists()
    with open_store(source) as a, open_store(empty_neo4j) as b, open_store(pulled) as c:
        assert everything(a) == everything(b) == everything(c)
        assert a.meta() == b.meta() == c.meta()
        assert retrievals(a, embedder) == retrievals(b, embedder) == retrievals(c, embedder)
    assert "nothing to do" in rapo("graph", "pull", empty_neo4j, str(pulled)).stderr

    stats = [json.loads(rapo("graph", "stats", "--json", "--graph", g).stdout) for g in (str(source), empty_neo4j)]
    assert stats[0]["nodes"] == stats[1]["nodes"] and stats[0]["edges"] == stats[1]["edges"]


@pytest.mark.neo4j
def test_push_refuses_to_overwrite_another_graph(source, tmp_path, empty_neo4j, embedder):
    build_small_graph(empty_neo4j, embedder, [CaptionPhrases(scenes=("in a field",), actions=("grazing",))])
    proc = rapo("graph", "push", str(source), empty_neo4j)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and "already holds another graph" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    replaced = rapo("graph", "push", str(source), empty_neo4j, "--replace")
    assert replaced.returncode == 0, replaced.stderr


def test_push_and_pull_check_their_arguments(source, tmp_path):
    missing = tmp_path / "missing.sqlite"
    cases = [
        (("graph", "push", str(missing), "bolt://127.0.0.1:9"), f"graph file not found: {missing}"),
        (("graph", "push", str(source), str(tmp_path / "x.sqlite")), "push copies to a bolt:// or neo4j:// URL"),
        (("graph", "pull", str(source), str(tmp_path / "x.sqlite")), "pull copies from a bolt:// or neo4j:// URL"),
        (("graph", "push", str(source), "bolt://127.0.0.1:9"), "cannot reach Neo4j at bolt://127.0.0.1:9"),
    ]
    for args, message in cases:
        proc = rapo(*args)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
