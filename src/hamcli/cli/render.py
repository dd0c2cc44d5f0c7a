"""Console helpers: data to stdout, progress and messages to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

NOT_A_DIAGNOSIS = "hamcli is a research tool: these outputs are not a diagnosis."

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def error(message: str) -> None:
    err.print(f"[bold red]Error:[/] {message}", highlight=False, markup=True)


def warn(message: str) -> None:
    err.print(f"[yellow]Warning:[/] {message}", highlight=False)


def info(message: str) -> None:
    err.print(message, highlight=False)


def model_source(predictor: Any, ref: str | None) -> None:
    """Say so when the bundled model stands in because no run was named and none exists."""
    from hamcli.runs import BUNDLED_FILE

    if ref is None and predictor.card.path == BUNDLED_FILE:
        info("no trained run yet: using the bundled model (LeNet, 96 px; see `hamcli predict --help`)")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def byte_progress(quiet: bool = False) -> Iterator[Any]:
    """A callback (name, done, total) drawing one download bar per file on stderr."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=err, disable=quiet)
    tasks: dict[str, Any] = {}

    def update(name: str, done: int, total: int | None) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total)
        progress.update(tasks[name], completed=done, total=total)

    with progress:
        yield update


@contextmanager
def count_progress(label: str, quiet: bool = False) -> Iterator[Any]:
    """A callback (done, total) drawing one bar on stderr."""
    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err, disable=quiet)
    task = progress.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        yield update
