"""The Neo4j store beyond the shared contract: parity with the embedded store, injection, schema, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rapo.common import GraphServerError
from rapo.graph_db.backends import open_store
from rapo.graph_db.default_graph import default_graph_path
from rapo.graph_db.model import CaptionPhrases, Kind
from rapo.graph_db.neo4j_config import Neo4jSettings, is_server_url
from rapo.graph_db.neo4j_store import LABELS, constraint_name, index_name
from rapo.graph_db.store import GraphMeta, NodeRow
from rapo.graph_db.transfer import copy_graph
from rapo.tools.retrieval import GraphLookup
from tests.conftest import SHARED_DATA
from tests.graphs import build_small_graph

RAPO = [sys.executable, "-m", "rapo"]

# Used when ../shared is absent; ../shared/data/rapo_samples/test_prompts.txt holds the reference code's 15.
FALLBACK_PROMPTS = [
    "a dog running on the beach",
    "a bird and a cat",
    "a chef cooking in a busy kitchen",
    "a red car driving through a city at night",
    "a man riding a horse across a field",
    "children playing in the snow",
    "a woman reading a book in a cafe",
    "a boat sailing on a calm lake at sunset",
    "a crowd dancing at a concert",
    "a cat sleeping on a sofa",
    "an astronaut walking on the moon",
    "a panda eating bamboo in a forest",
    "a skier going down a mountain",
    "fireworks over a river",
    "a couple walking in the rain",
]
NASTY = [
    '"}) DETACH DELETE n //',
    "'}) DETACH DELETE n //",
    "`Scene`) DETACH DELETE n WITH 1 AS x MATCH (m) DETACH DELETE m //",
    "a dog\\' }) MATCH (n) DETACH DELETE n RETURN 1 //",
    "$rows $scenes {text: 'x'} ]}) CALL db.clearQueryCaches()",
    '``` ``` \\u0027 \\" ;',
]


def reference_prompts() -> list[str]:
    path = SHARED_DATA / "rapo_samples" / "test_prompts.txt"
    if not path.is_file():
        return FALLBACK_PROMPTS
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(prompts) == 15, path
    return prompts


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RAPO, *args], capture_output=True, text=True, timeout=600, env={**os.environ, **env})


def assert_one_line_error(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def driver_for(url: str):
    from neo4j import GraphDatabase

    settings = Neo4jSettings.from_location(url)
    return GraphDatabase.driver(settings.url, auth=(settings.user, settings.password.get_secret_value())), settings


# -- URLs and credentials (no server needed) --------------------------------------------------------------------


def test_urls_pick_neo4j_and_paths_pick_files():
    for url in ("bolt://127.0.0.1:7687", "neo4j://h", "neo4j+s://h:1/db", "BOLT://h"):
        assert is_server_url(url)
    for path in ("g.sqlite", "/tmp/bolt://x", "./neo4j/graph.sqlite", "http://h:7474"):
        assert not is_server_url(path)


def test_url_parts_and_location_without_credentials(monkeypatch):
    monkeypatch.setenv("NEO4J_PASSWORD", "s3cret-pw")
    monkeypatch.delenv("NEO4J_DATABASE", raising=False)
    s = Neo4jSettings.from_location("neo4j://alice@db.example.org:7688/captions")
    assert (s.url, s.user, s.database) == ("neo4j://db.example.org:7688", "alice", "captions")
    assert s.location == "neo4j://db.example.org:7688/captions"
    assert s.password.get_secret_value() == "s3cret-pw" and "s3cret" not in repr(s)
    default = Neo4jSettings.from_location("bolt://127.0.0.1")
    assert default.location == "bolt://127.0.0.1:7687/neo4j"


def test_password_never_in_the_url(monkeypatch):
    with pytest.raises(GraphServerError, match=r"not in the URL") as caught:
        Neo4jSettings.from_location("bolt://neo4j:hunter2@127.0.0.1:7687")
    assert "hunter2" not in str(caught.value)


def test_password_file_must_be_private(tmp_path, monkeypatch):
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("NEO4J_PASSWORD_FILE", str(secret))
    secret.chmod(0o644)
    with pytest.raises(GraphServerError, match="chmod 600"):
        Neo4jSettings.from_location("bolt://127.0.0.1:7687")
    secret.chmod(0o600)
    assert Neo4jSettings.from_location("bolt://127.0.0.1").password.get_secret_value() == "from-a-file"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("bolt://127.0.0.1:9", "cannot reach Neo4j at bolt://127.0.0.1:9"),
        ("bolt://neo4j:hunter2@127.0.0.1:7687", "put the password in $NEO4J_PASSWORD"),
        ("bolt://127.0.0.1:notaport", "the port is not a number"),
    ],
)
def test_bad_url_is_one_line_and_exit_2(url, message):
    proc = run("graph", "query", "a dog", "--graph", url)
    assert_one_line_error(proc, message)
    assert "hunter2" not in proc.stderr


# -- against the server -------------------------------------------------------------------------------------------


@pytest.mark.neo4j
def test_schema_labels_constraints_and_vector_indexes(empty_neo4j, embedder):
    build_small_graph(empty_neo4j, embedder)
    driver, settings = driver_for(empty_neo4j)
    with driver:
        labels = {
            r["label"]
            for r in driver.execute_query(
                "MATCH (n) WHERE n:Phrase OR n:RapoGraph UNWIND labels(n) AS label RETURN DISTINCT label",
                database_=settings.database,
            ).records
        }
        types = {
            r["type"]
            for r in driver.execute_query(
                "MATCH (:Phrase)-[e]-() RETURN DISTINCT type(e) AS type", database_=settings.database
            ).records
        }
        constraints = {r["name"] for r in driver.execute_query("SHOW CONSTRAINTS", database_=settings.database).records}
        indexes = {
            r["name"]: r
            for r in driver.execute_query("SHOW VECTOR INDEXES YIELD *", database_=settings.database).records
            if r["name"].startswith("rapo_")
        }
    assert labels <= {*LABELS.values(), "Phrase", "RapoGraph"} and {"Scene", "Phrase", "RapoGraph"} <= labels
    assert types == {"CO_OCCURS"}
    assert {constraint_name(k) for k in Kind} <= constraints
    assert set(indexes) == {index_name(k) for k in Kind}
    for index in indexes.values():
        config = index["options"]["indexConfig"]
        assert index["state"] == "ONLINE"
        assert config["vector.dimensions"] == 384 and config["vector.similarity_function"].lower() == "cosine"


@pytest.mark.neo4j
def test_parity_with_the_embedded_store_on_the_reference_prompts(empty_neo4j, embedder):
    with open_store(default_graph_path(embedder)) as local, open_store(empty_neo4j, create=True) as server:
        copy_graph(local, server)
    prompts = reference_prompts()
    with open_store(default_graph_path(embedder)) as local, open_store(empty_neo4j) as server:
        compared = 0
        for prompt in prompts:
            query = embedder.encode_one(prompt)
            for kind in Kind:
                ours, theirs = local.search(kind, query, 10), server.search(kind, query, 10)
                assert [h.node for h in ours] == [h.node for h in theirs], (prompt, kind)
                assert np.allclose([h.score for h in ours], [h.score for h in theirs], atol=1e-4, rtol=0)
            for threshold in (0.0, 0.5):
                a = GraphLookup(local, embedder).retrieve(prompt, 3, threshold, query=query)
                b = GraphLookup(server, embedder).retrieve(prompt, 3, threshold, query=query)
                assert [s for s, _ in a.scenes] == [s for s, _ in b.scenes], prompt
                assert np.allclose([x for _, x in a.scenes], [x for _, x in b.scenes], atol=1e-4, rtol=0)
                keys = [(m.kind, m.text, m.scene, m.weight) for m in a.modifiers]
                assert keys == [(m.kind, m.text, m.scene, m.weight) for m in b.modifiers], prompt
                assert np.allclose([m.score for m in a.modifiers], [m.score for m in b.modifiers], atol=1e-4, rtol=0)
                compared += len(keys)
        assert compared > 100  # the comparison is about real lists, not empty ones


@pytest.mark.neo4j
def test_cypher_in_prompts_and_phrases_is_only_ever_a_parameter(empty_neo4j, embedder):
    records = [
        CaptionPhrases(scenes=(NASTY[0],), actions=(NASTY[1], "running"), subjects=(NASTY[2],)),
        CaptionPhrases(scenes=("on a sandy beach",), actions=(NASTY[3],), atmospheres=(NASTY[4], NASTY[5])),
    ]
    build_small_graph(empty_neo4j, embedder, records)
    with open_store(empty_neo4j) as store:
        before = store.stats()
        lookup = GraphLookup(store, embedder)
        for prompt in NASTY:
            result = lookup.retrieve(prompt, top_k=3, threshold=-1.0)
            assert result.modifiers
            store.neighbours([prompt, *NASTY])
            for kind in Kind:
                store.search(kind, embedder.encode_one(prompt), 5)
                store.export_nodes(kind, prompt, 10)
            store.export_edges(prompt, 5)
        neighbours, _ = store.neighbours([NASTY[0]])
        assert {n.node.text for n in neighbours} == {NASTY[1], "running", NASTY[2]}  # stored verbatim
        proc = run("graph", "query", NASTY[0], "--graph", empty_neo4j, "--threshold", "-1", "--json")
        assert proc.returncode == 0, proc.stderr
        assert store.stats() == before


@pytest.mark.neo4j
def test_wrong_password_missing_database_and_no_graph(empty_neo4j):
    proc = run("graph", "stats", "--graph", empty_neo4j, NEO4J_PASSWORD="not-the-password-42")
    assert_one_line_error(proc, "refused the login of user 'neo4j'")
    assert "not-the-password-42" not in proc.stderr
    url = Neo4jSettings.from_location(empty_neo4j).url
    assert_one_line_error(run("graph", "stats", "--graph", url + "/nosuchdb"), "database 'nosuchdb' does not exist")
    assert_one_line_error(run("graph", "stats", "--graph", empty_neo4j), "graph is empty")


@pytest.mark.neo4j
def test_a_graph_without_its_vector_index(empty_neo4j, embedder):
    build_small_graph(empty_neo4j, embedder)
    driver, settings = driver_for(empty_neo4j)
    with driver:
        driver.execute_query(f"DROP INDEX {index_name(Kind.ACTION)}", database_=settings.database)
    proc = run("graph", "query", "a dog on the beach", "--graph", empty_neo4j)
    assert_one_line_error(proc, f"has no vector index {index_name(Kind.ACTION)}")
    assert settings.location in proc.stderr


@pytest.mark.neo4j
def test_a_graph_of_another_dimension(empty_neo4j, embedder):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with open_store(empty_neo4j, create=True) as store:
        nodes = [NodeRow(Kind.SCENE, "on a beach", 1, vectors[0]), NodeRow(Kind.ACTION, "running", 1, vectors[1])]
        store.write(nodes, [], GraphMeta(embedder=embedder.model_id, dim=8))
    for args in (["graph", "query", "a dog"], ["refine", "a dog"]):
        proc = run(*args, "--graph", empty_neo4j)
        assert_one_line_error(proc, "has 8-d embeddings; the embedder all-MiniLM-L6-v2 makes 384-d ones")


@pytest.mark.neo4j
def test_password_is_never_recorded(empty_neo4j, embedder):
    build_small_graph(empty_neo4j, embedder)
    password = Neo4jSettings.from_location(empty_neo4j).password.get_secret_value()
    proc = run("graph", "stats", "--graph", empty_neo4j, "--json")
    assert proc.returncode == 0, proc.stderr
    assert password not in proc.stdout + proc.stderr
    assert '"location": "' + Neo4jSettings.from_location(empty_neo4j).location + '"' in proc.stdout


@pytest.mark.neo4j
@pytest.mark.slow
def test_refine_against_the_server(empty_neo4j, embedder):
    build_small_graph(empty_neo4j, embedder)
    proc = run("refine", "--json", "a dog running on the beach", "--graph", empty_neo4j)
    assert proc.returncode == 0, proc.stderr
    assert '"location": "' + Neo4jSettings.from_location(empty_neo4j).location + '"' in proc.stdout
    assert "shoreline" in proc.stdout  # the retrieved modifier came from the server's graph


@pytest.mark.neo4j
def test_graph_build_into_the_server_then_query(empty_neo4j, tmp_path):
    captions = tmp_path / "captions.tsv"
    captions.write_text(
        "modality\tcaption\n"
        "video\ta man is riding a horse on a beach\n"
        "video\ta woman is chopping onions in a kitchen\n"
        "video\ta dog is running on the beach at sunset\n"
    )
    for _ in range(2):  # building again adds the counts up, as on a file
        proc = run("graph", "build", str(captions), "--graph", empty_neo4j)
        assert proc.returncode == 0, proc.stderr
    stats = json.loads(run("graph", "stats", "--graph", empty_neo4j, "--json").stdout)
    assert stats["meta"]["captions"] == 6 and len(stats["meta"]["sources"]) == 2 and stats["nodes"]["scene"] >= 2
    query = ("graph", "query", "a horse on the beach", "--graph", empty_neo4j, "--threshold", "0", "--json")
    found = json.loads(run(*query).stdout)
    assert found["scenes"] and found["modifiers"]
