"""Open a graph store by its location: the embedded SQLite file or a Neo4j server.

Apart from `graph_db/store.py` (the protocol both implement), so that neither implementation imports its importer.
"""

from __future__ import annotations

from pathlib import Path

from rapo.graph_db.neo4j_config import is_server_url
from rapo.graph_db.store import GraphStore


def open_store(location: str | Path, *, create: bool = False) -> GraphStore:
    """Open the graph at `location`: a file path for the embedded store, a bolt:// or neo4j:// URL for Neo4j.

    Args:
        location: where the graph lives: a file, or ``bolt://[USER@]HOST[:PORT][/DATABASE]`` (the password
            comes from $NEO4J_PASSWORD or $NEO4J_PASSWORD_FILE).
        create: make a new empty graph when there is none (for building, importing and copying); on Neo4j,
            also create missing constraints and vector indexes.
    """
    if not is_server_url(location):
        from rapo.graph_db.sqlite_store import SQLiteGraphStore

        return SQLiteGraphStore(Path(location), create=create)
    from rapo.graph_db.neo4j_store import Neo4jGraphStore

    return Neo4jGraphStore(str(location), create=create)
