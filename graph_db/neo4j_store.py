"""The Neo4j graph store: the same `GraphStore` on a Neo4j 5 server, searched through its vector indexes.

The graph in Neo4j, as Neo4j Browser or Bloom shows it::

    (:Scene:Phrase {text, kind, count, embedding, embedding_f32})
        -[:CO_OCCURS {count}]->
    (:Action|Atmosphere|Subject:Phrase {text, kind, count, embedding, embedding_f32})
    (:RapoGraph {id: 'graph', meta: <GraphMeta JSON>, copy: <progress JSON of an unfinished copy>})

Labels come from the fixed `Kind` set only. Each kind label has a uniqueness constraint on `text` and a 384-d
cosine vector index on `embedding` (a list of floats); `embedding_f32` holds the same vector as little-endian
float32 bytes, which the driver hands back as `bytes` without decoding a float at a time. Every statement is
built from those constants; every value, user text included, is a parameter.

One database holds one graph (Neo4j Community has one user database: name another with ``/DATABASE`` on
Enterprise). Writes run as batched ``UNWIND`` statements in managed transactions (``execute_write``), so
transient errors are retried.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from neo4j import GraphDatabase, ManagedTransaction

from rapo.common import GraphFileError, GraphServerError
from rapo.graph_db.model import MODIFIER_KINDS, Hit, Kind, Neighbour, Node
from rapo.graph_db.neo4j_config import Neo4jSettings, server_errors
from rapo.graph_db.store import SCHEMA_VERSION, EdgeRow, GraphMeta, GraphStats, NodeRow

LABELS: dict[Kind, str] = {
    Kind.SCENE: "Scene",
    Kind.ACTION: "Action",
    Kind.ATMOSPHERE: "Atmosphere",
    Kind.SUBJECT: "Subject",
}
PHRASE = "Phrase"  # the label every node carries, beside its kind's
NODE_BATCH = 500  # nodes per UNWIND: about 2 MB of parameters with 384-d vectors
EDGE_BATCH = 5000
INDEX_WAIT_S = 600
CANDIDATES = 16  # extra vector-index hits scored exactly beyond k, so ties at the cut are ranked exactly and by text
# Neighbours asked of the index at least: its HNSW search beam. On the 100k-caption bench graph 256 missed 3 of
# 1,000 top-3 scene lists; 512 missed none, for 1.5 ms more a query.
SEARCH_BREADTH = 512


def index_name(kind: Kind) -> str:
    """The name of the vector index on one kind's nodes."""
    return f"rapo_{kind.value}_embedding"


def constraint_name(kind: Kind) -> str:
    """The name of the uniqueness constraint on one kind's texts."""
    return f"rapo_{kind.value}_text"


# Every statement is built here, once, from the constants above; nothing a user types reaches a query string.
_NODE_SET = f"SET n:{PHRASE}, n.kind = $kind, n.count = r.count, n.embedding = r.embedding, n.embedding_f32 = r.f32"
_ADD_NODES = {
    kind: f"UNWIND $rows AS r MERGE (n:{label} {{text: r.text}}) "
    f"ON CREATE {_NODE_SET} ON MATCH SET n.count = n.count + r.count"
    for kind, label in LABELS.items()
}
_PUT_NODES = {
    kind: f"UNWIND $rows AS r MERGE (n:{label} {{text: r.text}}) {_NODE_SET}" for kind, label in LABELS.items()
}
_EDGE_MATCH = (
    "UNWIND $rows AS r MATCH (s:Scene {{text: r.scene}}) MATCH (m:{label} {{text: r.text}}) "
    "MERGE (s)-[e:CO_OCCURS]->(m) "
)
_ADD_EDGES = {
    kind: _EDGE_MATCH.format(label=LABELS[kind])
    + "ON CREATE SET e.count = r.count ON MATCH SET e.count = e.count + r.count RETURN count(e) AS written"
    for kind in MODIFIER_KINDS
}
_PUT_EDGES = {
    kind: _EDGE_MATCH.format(label=LABELS[kind]) + "SET e.count = r.count RETURN count(e) AS written"
    for kind in MODIFIER_KINDS
}
_COUNT_NODES = {kind: f"MATCH (n:{label}) RETURN count(n) AS n" for kind, label in LABELS.items()}
_COUNT_EDGES = {kind: f"MATCH ()-[e:CO_OCCURS]->(:{LABELS[kind]}) RETURN count(e) AS n" for kind in MODIFIER_KINDS}
_EXPORT_NODES = {
    kind: f"MATCH (n:{label}) WHERE n.text > $after "
    "RETURN n.text AS text, n.count AS count, n.embedding_f32 AS f32 ORDER BY n.text LIMIT $limit"
    for kind, label in LABELS.items()
}
_EXPORT_EDGES = (
    "MATCH (s:Scene) WHERE s.text > $after WITH s ORDER BY s.text LIMIT $scenes "
    "OPTIONAL MATCH (s)-[e:CO_OCCURS]->(m:Phrase) "
    "RETURN s.text AS scene, collect(CASE WHEN m IS NULL THEN null ELSE [m.kind, m.text, e.count] END) AS edges "
    "ORDER BY scene"
)
_SEARCH = (
    "CALL db.index.vector.queryNodes($index, $n, $vector) YIELD node, score "
    "WITH node, score ORDER BY score DESC LIMIT $keep "
    "RETURN node.text AS text, node.count AS count, node.embedding_f32 AS f32"
)
_NEIGHBOURS = (
    "MATCH (s:Scene)-[e:CO_OCCURS]->(m:Phrase) WHERE s.text IN $scenes "
    "RETURN s.text AS scene, m.kind AS kind, m.text AS text, m.count AS count, e.count AS weight, "
    "m.embedding_f32 AS f32"
)
_READ_GRAPH = "MATCH (g:RapoGraph {id: 'graph'}) RETURN g.meta AS meta, g.copy AS copy"
_SET_META = "MERGE (g:RapoGraph {id: 'graph'}) SET g.meta = $meta REMOVE g.copy"
_SET_COPY = "MERGE (g:RapoGraph {id: 'graph'}) SET g.copy = $copy"
_VECTOR_INDEXES = (
    "SHOW VECTOR INDEXES YIELD name, labelsOrTypes, properties, options, state "
    "WHERE name STARTS WITH 'rapo_' RETURN name, labelsOrTypes, properties, options, state"
)


def _rows(nodes: Sequence[NodeRow], dim: int) -> list[dict]:
    rows = []
    for n in nodes:
        vector = np.ascontiguousarray(n.embedding, dtype="<f4")
        if vector.shape != (dim,):
            raise GraphFileError(f"node {n.kind.value} {n.text!r} has a {vector.shape} embedding, expected ({dim},)")
        rows.append({"text": n.text, "count": n.count, "embedding": vector.tolist(), "f32": vector.tobytes()})
    return rows


def _matrix(blobs: list[bytes], dim: int) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32).reshape(len(blobs), dim)  # (N, dim)


class Neo4jGraphStore:
    """A `GraphStore` in a Neo4j 5 database, opened from a ``bolt://`` or ``neo4j://`` URL.

    Search asks a kind's vector index for the k + 16 nearest nodes, then scores them exactly as the embedded
    store does (float32 dot products of the stored unit vectors, ties by text). Neo4j's own scores are
    (1 + cos) / 2 from the index, so the store does not report them: with the vectors at hand, the scores equal
    the embedded store's, and so does the order.
    """

    def __init__(self, location: str, *, create: bool = False, settings: Neo4jSettings | None = None) -> None:
        self.settings = settings or Neo4jSettings.from_location(location)
        self.location = self.settings.location
        password = self.settings.password.get_secret_value() if self.settings.password else None
        self._driver = GraphDatabase.driver(
            self.settings.url,
            auth=(self.settings.user, password) if password is not None else None,
            connection_timeout=10,
            max_transaction_retry_time=30,
            notifications_min_severity="OFF",  # "index already exists" and the like are not the user's business
            user_agent="rapo",
        )
        self._schema_dim: int | None = None
        try:
            with server_errors(self.settings):
                self._driver.verify_connectivity()
                self._read("RETURN 1 AS ok")  # fails here when the database does not exist
            self._meta, self._copy, self._orphans = self._read_graph()
            # Opened to write, anything may be repaired or replaced: the schema is checked when writing.
            if not create:
                self.meta()
                self._check_indexes(self._meta.dim)
        except BaseException:
            self._driver.close()
            raise

    # -- plumbing -------------------------------------------------------------------------------------------

    def _read(self, statement: str, **params: object) -> list:
        with server_errors(self.settings):
            return self._driver.execute_query(statement, params, database_=self.settings.database, routing_="r").records

    def _write(self, work) -> object:  # noqa: ANN001 - a function of one ManagedTransaction
        with server_errors(self.settings), self._driver.session(database=self.settings.database) as session:
            return session.execute_write(work)

    def _run(self, statement: str, **params: object) -> None:
        with server_errors(self.settings), self._driver.session(database=self.settings.database) as session:
            session.run(statement, params).consume()

    def _read_graph(self) -> tuple[GraphMeta | None, dict | None, bool]:
        """The metadata, the progress of an unfinished copy, and whether there are nodes without either."""
        records = self._read(_READ_GRAPH)
        meta_json, copy_json = (records[0]["meta"], records[0]["copy"]) if records else (None, None)
        copy = json.loads(copy_json) if copy_json else None
        if meta_json is None:
            return None, copy, copy is None and bool(self._read(f"MATCH (n:{PHRASE}) RETURN n LIMIT 1"))
        meta = GraphMeta.model_validate_json(meta_json)
        if meta.schema_version != SCHEMA_VERSION:
            raise GraphFileError(
                f"graph schema version {meta.schema_version} at {self.location}; this rapo reads "
                f"version {SCHEMA_VERSION}: push the graph again with `rapo graph push FILE URL --replace`"
            )
        return meta, copy, False

    def _vector_indexes(self) -> dict[str, dict]:
        return {r["name"]: dict(r) for r in self._read(_VECTOR_INDEXES)}

    def _check_indexes(self, dim: int) -> None:
        """Every kind's vector index exists, is online, cosine, and has the graph's dimension."""
        found = self._vector_indexes()
        for kind, label in LABELS.items():
            name = index_name(kind)
            index = found.get(name)
            if index is None:
                raise GraphServerError(
                    f"graph at {self.location} has no vector index {name} on :{label}(embedding): "
                    f"rerun `rapo graph push FILE {self.location}`, which creates it"
                )
            config = index["options"].get("indexConfig", {})
            if config.get("vector.dimensions") != dim:
                raise GraphServerError(
                    f"vector index {name} at {self.location} is {config.get('vector.dimensions')}-d but the graph's "
                    f"embeddings are {dim}-d: push the graph again with `rapo graph push FILE URL --replace`"
                )
            if str(config.get("vector.similarity_function", "")).lower() != "cosine":
                raise GraphServerError(f"vector index {name} at {self.location} is not a cosine index")
            if index["state"] == "FAILED":
                raise GraphServerError(
                    f"vector index {name} at {self.location} failed to build: drop it and push the graph again"
                )
        if any(index["state"] != "ONLINE" for index in found.values()):
            self._run("CALL db.awaitIndexes($seconds)", seconds=INDEX_WAIT_S)

    def _ensure_schema(self, dim: int) -> None:
        """Create the constraints and the vector indexes that are missing, and wait until they are online."""
        if self._schema_dim == dim:
            return
        found = self._vector_indexes()
        stale = [
            name
            for name, index in found.items()
            if index["options"].get("indexConfig", {}).get("vector.dimensions") != dim
            or index["options"].get("indexConfig", {}).get("vector.quantization.enabled")
        ]
        if stale and not self._read(f"MATCH (n:{PHRASE}) RETURN n LIMIT 1"):
            for kind in LABELS:  # indexes left by an earlier, deleted graph: rebuild them for this one
                if index_name(kind) in stale:
                    self._run(f"DROP INDEX {index_name(kind)} IF EXISTS")
                    found.pop(index_name(kind))
        constraints = {r["name"] for r in self._read("SHOW CONSTRAINTS YIELD name RETURN name")}
        statements = [
            *(
                f"CREATE CONSTRAINT {constraint_name(k)} IF NOT EXISTS FOR (n:{label}) REQUIRE n.text IS UNIQUE"
                for k, label in LABELS.items()
                if constraint_name(k) not in constraints
            ),
            *(
                f"CREATE VECTOR INDEX {index_name(k)} IF NOT EXISTS FOR (n:{label}) ON n.embedding OPTIONS $options"
                for k, label in LABELS.items()
                if index_name(k) not in found
            ),
        ]
        if "rapo_graph_id" not in constraints:
            statements.append("CREATE CONSTRAINT rapo_graph_id IF NOT EXISTS FOR (g:RapoGraph) REQUIRE g.id IS UNIQUE")
        options = {
            "indexConfig": {
                "vector.dimensions": dim,
                "vector.similarity_function": "cosine",
                # Quantised vectors move cosines by up to 0.01; full precision keeps the top-k exact.
                "vector.quantization.enabled": False,
            }
        }
        for statement in statements:
            self._run(statement, options=options)
        if statements:
            self._run("CALL db.awaitIndexes($seconds)", seconds=INDEX_WAIT_S)
        self._check_indexes(dim)  # waits too, for indexes still populating
        self._schema_dim = dim

    # -- the GraphStore protocol ----------------------------------------------------------------------------

    def meta(self) -> GraphMeta:
        """The graph's metadata; a database without a rapo graph is an error to search."""
        if self._meta is None:
            if self._orphans:
                raise GraphFileError(
                    f"graph at {self.location} has nodes but no metadata: "
                    "overwrite it with `rapo graph push FILE URL --replace`"
                )
            if self._copy is not None:
                raise GraphFileError(
                    f"graph at {self.location} is incomplete: a copy was interrupted; rerun the same "
                    "`rapo graph push` to finish it"
                )
            raise GraphFileError(f"graph is empty: {self.location} (push one with `rapo graph push FILE URL`)")
        return self._meta

    def write(self, nodes: Sequence[NodeRow], edges: Sequence[EdgeRow], meta: GraphMeta) -> None:
        """Upsert nodes and edges, summing counts, and replace the metadata, in one transaction."""
        self._ensure_schema(meta.dim)
        self._write_rows(nodes, edges, meta.dim, _ADD_NODES, _ADD_EDGES, _SET_META, meta=meta.model_dump_json())
        self._meta, self._copy, self._orphans = meta, None, False

    def _write_rows(
        self,
        nodes: Sequence[NodeRow],
        edges: Sequence[EdgeRow],
        dim: int,
        node_statements: dict[Kind, str],
        edge_statements: dict[Kind, str],
        last: str,
        **last_params: str,
    ) -> None:
        """Nodes, then edges, in batches, then the `last` statement: one managed, retried transaction."""
        rows = {kind: _rows([n for n in nodes if n.kind == kind], dim) for kind in LABELS}
        edge_rows = {
            kind: [{"scene": e.scene, "text": e.text, "count": e.count} for e in edges if e.kind == kind]
            for kind in MODIFIER_KINDS
        }

        def work(tx: ManagedTransaction) -> None:
            for kind, kind_rows in rows.items():
                for start in range(0, len(kind_rows), NODE_BATCH):
                    tx.run(node_statements[kind], rows=kind_rows[start : start + NODE_BATCH], kind=kind.value).consume()
            self._edges(tx, edge_statements, edge_rows)
            tx.run(last, **last_params).consume()

        self._write(work)

    def _edges(self, tx: ManagedTransaction, statements: dict[Kind, str], rows: dict[Kind, list[dict]]) -> None:
        for kind, kind_rows in rows.items():
            for start in range(0, len(kind_rows), EDGE_BATCH):
                batch = kind_rows[start : start + EDGE_BATCH]
                written = tx.run(statements[kind], rows=batch).single(strict=True)["written"]
                if written != len(batch):
                    raise GraphFileError(
                        f"{len(batch) - written} {kind.value} edge(s) name a scene or modifier missing from "
                        f"{self.location}; nothing was written"
                    )

    def search(self, kind: Kind, query: np.ndarray, k: int) -> list[Hit]:
        """The `k` nodes of `kind` nearest to `query` by cosine similarity, best first, ties by text."""
        if k <= 0:
            return []
        query = query.astype(np.float32)
        keep = k + CANDIDATES
        records = self._read(
            _SEARCH, index=index_name(kind), n=max(keep, SEARCH_BREADTH), keep=keep, vector=query.tolist()
        )
        if not records:
            return []
        scores = _matrix([r["f32"] for r in records], self.meta().dim) @ query  # (N,)
        ranked = sorted(range(len(records)), key=lambda i: (-round(float(scores[i]), 6), records[i]["text"]))[:k]
        return [Hit(Node(kind, records[i]["text"], records[i]["count"]), float(scores[i])) for i in ranked]

    def neighbours(self, scenes: Sequence[str]) -> tuple[list[Neighbour], np.ndarray]:
        """Every modifier linked to one of `scenes`, with co-occurrence weights and embeddings."""
        dim = self.meta().dim
        if not scenes:
            return [], np.empty((0, dim), dtype=np.float32)
        records = sorted(self._read(_NEIGHBOURS, scenes=list(scenes)), key=lambda r: (r["scene"], r["kind"], r["text"]))
        found = [Neighbour(r["scene"], Node(Kind(r["kind"]), r["text"], r["count"]), r["weight"]) for r in records]
        return found, _matrix([r["f32"] for r in records], dim)  # (N, dim)

    def stats(self) -> GraphStats:
        """Node counts per kind and edge counts per modifier kind (from Neo4j's count store)."""
        nodes = {kind.value: self._read(q)[0]["n"] for kind, q in _COUNT_NODES.items()}
        edges = {kind.value: self._read(q)[0]["n"] for kind, q in _COUNT_EDGES.items()}
        return GraphStats(location=self.location, nodes=nodes, edges=edges, meta=self.meta())

    def close(self) -> None:
        """Close the driver and its connections."""
        self._driver.close()

    def __enter__(self) -> Neo4jGraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- copying whole graphs (graph_db.transfer) ------------------------------------------------------------

    def export_nodes(self, kind: Kind, after: str, limit: int) -> list[NodeRow]:
        """Up to `limit` nodes of `kind` whose text sorts after `after`, in the store's text order."""
        dim = self.meta().dim if self._meta else None
        records = self._read(_EXPORT_NODES[kind], after=after, limit=limit)
        if records and dim is None:
            dim = len(records[0]["f32"]) // 4
        return [NodeRow(kind, r["text"], r["count"], _matrix([r["f32"]], dim)[0]) for r in records]

    def export_edges(self, after: str, scenes: int) -> tuple[list[EdgeRow], str | None]:
        """The edges of the next `scenes` scenes whose text sorts after `after`, and the last of those scenes."""
        records = self._read(_EXPORT_EDGES, after=after, scenes=scenes)
        edges = [EdgeRow(r["scene"], Kind(kind), text, count) for r in records for kind, text, count in r["edges"]]
        return edges, (records[-1]["scene"] if records else None)

    def put(self, nodes: Sequence[NodeRow], edges: Sequence[EdgeRow], progress: dict) -> None:
        """Write nodes and edges with exactly these counts (so writing twice changes nothing) and `progress`."""
        dim = len(nodes[0].embedding) if nodes else 0
        if nodes:
            self._ensure_schema(dim)
        self._write_rows(nodes, edges, dim, _PUT_NODES, _PUT_EDGES, _SET_COPY, copy=json.dumps(progress))
        self._copy, self._orphans = progress, False

    def progress(self) -> dict | None:
        """The progress an unfinished copy into this store recorded, if any."""
        return self._copy

    def finish(self, meta: GraphMeta) -> None:
        """End a copy: set the metadata and forget the progress; creates the indexes if no node was copied."""
        self._ensure_schema(meta.dim)
        self._write(lambda tx: tx.run(_SET_META, meta=meta.model_dump_json()).consume())
        self._meta, self._copy, self._orphans = meta, None, False

    def clear(self) -> None:
        """Delete the graph's nodes, edges and metadata (other data stays; the indexes stay, empty)."""
        while self._write(
            lambda tx: tx.run(f"MATCH (n:{PHRASE}) WITH n LIMIT 5000 DETACH DELETE n RETURN count(*) AS n").single()[
                "n"
            ]
        ):
            pass
        self._write(lambda tx: tx.run("MATCH (g:RapoGraph) DETACH DELETE g").consume())
        self._meta, self._copy, self._orphans = None, None, False
