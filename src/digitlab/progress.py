"""One overall progress bar for commands that train many models (compare, tune), and a spinner
for a single wait of seconds (evaluation, export, the suite)."""

from __future__ import annotations

import contextlib

from rich import get_console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def overall(what: str) -> Progress:
    """A bar of `what` (runs, trials) with the one in progress named, elapsed time and ETA.
    Lines printed while it shows (Keras' epoch lines) scroll above it on a terminal."""
    return Progress(
        TextColumn(f"[bold]{what}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        redirect_stderr=False,  # errors stay on stderr, where scripts look for them
    )


def status(what: str) -> contextlib.AbstractContextManager:
    """A spinner naming a wait of seconds (`with status("exporting ..."):`), in the Rich style of
    the bar above; on a terminal only: pipes, --json and notebooks get nothing extra."""
    console = get_console()
    return console.status(f"{what}...") if console.is_terminal else contextlib.nullcontext()
