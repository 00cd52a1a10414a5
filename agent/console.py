"""The output layer: results to stdout, progress and errors to stderr, progress bars only on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# No emoji codes: rich would turn a prompt's ":dog:" into an emoji inside a result.
out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)


@contextmanager
def progress() -> Iterator[Progress]:
    """A rich progress display on stderr, silent when stderr is not a terminal."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not sys.stderr.isatty(),
    )
    with bar:
        yield bar


def quiet_libraries() -> None:
    """Silence transformers' per-load progress bars and warnings; rapo reports progress itself."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
