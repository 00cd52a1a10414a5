"""What every layer may import: the errors a user can fix, where rapo keeps its files, and the output layer.

The bottom of the import graph (below rapo.prompts, rapo.graph_db, rapo.tools, rapo.finetune and rapo.agent): it
imports only the standard library and rich.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


# Errors a user can fix. The CLI prints them as one line and exits with code 2.
class RapoError(Exception):
    """A problem with the user's input, files or models, stated as what is wrong and where."""


class GraphFileError(RapoError):
    """A graph file is missing, corrupt, or not a rapo graph."""


class InputFileError(RapoError):
    """A caption, prompt or graph-export file cannot be read."""


class ModelError(RapoError):
    """A model path does not exist or does not hold a loadable model."""


class PromptError(RapoError):
    """A prompt is empty, too long or otherwise unusable."""


class ServiceError(RapoError):
    """A server (LLM, VLM judge, database) cannot be reached, timed out, or answered with an error."""


class GraphServerError(RapoError):
    """A graph server cannot be reached, refuses the login, or lacks the database, graph or index asked for."""


class GraphCopyError(RapoError):
    """A graph cannot be copied between stores, or the copy's counts do not match its source."""


# Paths


def rapo_home() -> Path:
    """Where rapo keeps its caches (converted models, the default graph, chat sessions).

    `$RAPO_HOME`, else `$XDG_CACHE_HOME/rapo`, else `~/.cache/rapo`.
    """
    if home := os.environ.get("RAPO_HOME"):
        return Path(home).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "rapo"


# Files in, lines out


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    r"""Yield (line number, text) of a UTF-8 file, failing on the first line that is not UTF-8.

    A line ends where `open()` in text mode ends one: at "\n", "\r\n" or a lone "\r", and nowhere else.
    U+2028, U+2029, U+0085, form feeds and the other characters `str.splitlines` also breaks at stay inside
    their line: the numbers are those of Python's `for line in open(path)`.
    """
    if not path.is_file():
        raise InputFileError(f"file not found: {path}")
    number = 0
    with path.open("rb") as f:
        for raw in f:  # split at b"\\n" only
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith((b"\n", b"\r")) else raw
            for part in raw.split(b"\r"):
                number += 1
                try:
                    yield number, part.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InputFileError(
                        f"{path}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                    ) from None


# Characters `str.splitlines` breaks at that JSON leaves raw: escaped, a JSON line is one line for every reader.
_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def jsonl_line(record: object) -> str:
    """`record` as one line of JSON Lines (no newline at the end), readable text kept as it is."""
    line = json.dumps(record, ensure_ascii=False, default=str)
    for char, escape in _LINE_BREAKS.items():
        line = line.replace(char, escape)
    return line


# The output layer: results to stdout, progress and errors to stderr, progress bars only on a terminal.
# No emoji codes: rich would turn a prompt's ":dog:" into an emoji inside a result.
stdout = Console(soft_wrap=True, emoji=False)
stderr = Console(stderr=True, soft_wrap=True, emoji=False)


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A rich progress display on stderr, silent when stderr is not a terminal."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        disable=not sys.stderr.isatty(),
    )
    with bar:
        yield bar


def quiet_libraries() -> None:
    """Silence transformers' per-load progress bars and warnings; rapo reports progress itself.

    Through the variables transformers and huggingface_hub read when they are imported, so that a command which
    never loads a model (a `rapo refine` answered by `rapo serve`) never imports them (about 1 s).
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
