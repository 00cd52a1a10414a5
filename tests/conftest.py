"""Shared fixtures: one RAPO_HOME per test session, the real embedder and LLM loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.required import skip_or_fail

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: this test reads the research-only data in ../shared/data (CI has it)")
    return path


@pytest.fixture(scope="session", autouse=True)
def rapo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Caches (converted LLM, default graph) go to a fresh folder, as on a new machine.

    Set RAPO_TEST_HOME to reuse a folder between runs when iterating locally.
    """
    home = Path(os.environ.get("RAPO_TEST_HOME") or tmp_path_factory.mktemp("rapo-home"))
    os.environ["RAPO_HOME"] = str(home)
    # Most tests check plumbing, not length: the short profile's 35 words cost a third of the default's 100 on a
    # CPU. The tests of the default itself pass --target (tests/test_cli.py).
    os.environ["RAPO_TARGET"] = "short"
    return home


@pytest.fixture(scope="session")
def embedder():
    from rapo.graph_db.embeddings import Embedder

    e = Embedder()
    e.load()
    return e


@pytest.fixture(scope="session")
def graph(tmp_path_factory, embedder):
    """The small test graph (`tests/graphs.py`) in a SQLite file; tests only read it."""
    from tests.graphs import build_small_graph

    return build_small_graph(tmp_path_factory.mktemp("g") / "small.sqlite", embedder)


@pytest.fixture(scope="session")
def llm(rapo_home):
    from rapo.tools.llm import LocalLLM

    model = LocalLLM()
    model.load()
    return model


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory, rapo_home) -> Path:
    """A model folder with a tiny random Llama whose answers end at once (`tests/tiny_llm.py`), for `--llm`."""
    from tests.tiny_llm import save_tiny_llm

    return save_tiny_llm(tmp_path_factory.mktemp("tiny-llm") / "model")


# -- vLLM: the tests marked `vllm` run against a real server ------------------------------------------------------


@pytest.fixture(scope="session")
def vllm_spec() -> str:
    """`openai:URL#MODEL` of the test vLLM server ($RAPO_TEST_VLLM_SPEC), serving the LoRA module `vllm_lora`.

    Without one the test skips, unless RAPO_REQUIRE_VLLM=1 (set by .ci/run), which makes it fail.
    """
    spec = os.environ.get("RAPO_TEST_VLLM_SPEC")
    if not spec:
        skip_or_fail("VLLM", "no vLLM server: set RAPO_TEST_VLLM_SPEC (scripts/test starts one)")
    return spec


@pytest.fixture(scope="session")
def vllm_lora() -> str:
    """The name under which the test server serves a random LoRA adapter (tests/make_lora.py)."""
    return os.environ.get("RAPO_TEST_VLLM_LORA", "rapo-test-lora")


# -- Neo4j: the GraphStore contract runs against both backends ---------------------------------------------------

BACKENDS = ["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)]


@pytest.fixture(scope="session")
def neo4j_url() -> str:
    """The scratch Neo4j database of $RAPO_TEST_NEO4J_URL; tests delete the rapo graph in it.

    Without one the test skips, unless RAPO_REQUIRE_NEO4J=1 (set by scripts/test), which makes it fail.
    """
    url = os.environ.get("RAPO_TEST_NEO4J_URL")
    if not url:
        skip_or_fail("NEO4J", "no Neo4j server: set RAPO_TEST_NEO4J_URL (`bash scripts/neo4j-local start` runs one)")
    return url


@pytest.fixture
def empty_neo4j(neo4j_url) -> str:
    """The test database with no rapo graph in it."""
    from rapo.graph_db.neo4j_store import Neo4jGraphStore

    with Neo4jGraphStore(neo4j_url, create=True) as store:
        store.clear()
    return neo4j_url


@pytest.fixture(params=BACKENDS)
def new_graph(request, tmp_path):
    """Where a test may create a graph: a new file, or the emptied Neo4j test database."""
    if request.param == "sqlite":
        return tmp_path / "g.sqlite"
    return request.getfixturevalue("empty_neo4j")


# -- PostgreSQL and Ray: the distributed run -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The scratch PostgreSQL server of $RAPO_TEST_POSTGRES_URL; tests create and drop databases on it."""
    url = os.environ.get("RAPO_TEST_POSTGRES_URL")
    if not url:
        skip_or_fail("POSTGRES", "no PostgreSQL server: set RAPO_TEST_POSTGRES_URL (scripts/postgres-local start)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_or_fail("POSTGRES", "psycopg is not installed: pip install -e '.[scale]'")
    return url


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new, empty database on the test server, dropped after the test."""
    import uuid
    from urllib.parse import urlsplit

    import psycopg

    name = f"rapo_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield urlsplit(postgres_server)._replace(path=f"/{name}").geturl()
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def ray_installed():
    """The `ray` module; without it the test skips (fails with RAPO_REQUIRE_POSTGRES=1)."""
    try:
        import ray
    except ImportError:
        skip_or_fail("POSTGRES", "Ray is not installed: pip install -e '.[scale]'")
    return ray


@pytest.fixture(scope="module")
def local_ray(ray_installed):
    """A local Ray instance with 2 CPUs and 2 logical GPUs (the GPU path runs the tiny generator on the CPU)."""
    ray = ray_installed
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
