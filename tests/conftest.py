"""Shared fixtures: one RAPO_HOME per test session, the real embedder and LLM loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    return home


@pytest.fixture(scope="session")
def embedder():
    from graph_db.embeddings import Embedder

    e = Embedder()
    e.load()
    return e


@pytest.fixture(scope="session")
def llm(rapo_home):
    from tools.llm import LocalLLM

    model = LocalLLM()
    model.load()
    return model
