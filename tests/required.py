"""Tests that need a server or a browser skip without one, unless `RAPO_REQUIRE_<PART>=1` (set by .ci/run)."""

import os

import pytest


def skip_or_fail(part: str, message: str) -> None:
    """Skip with `message`; fail instead when $RAPO_REQUIRE_<part> is set, so a green CI proves the tests ran."""
    variable = f"RAPO_REQUIRE_{part}"
    if os.environ.get(variable, "") not in ("", "0"):
        pytest.fail(f"{message}; {variable}=1 forbids skipping")
    pytest.skip(message)
