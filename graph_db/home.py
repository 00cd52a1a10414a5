"""Where rapo keeps its caches: converted models and the default graph."""

import os
from pathlib import Path


def rapo_home() -> Path:
    """`$RAPO_HOME`, else `$XDG_CACHE_HOME/rapo`, else `~/.cache/rapo`."""
    if home := os.environ.get("RAPO_HOME"):
        return Path(home).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "rapo"
