"""One overall progress bar for commands that train many models (compare, tune)."""

from __future__ import annotations

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
