"""Console output: data on stdout (a table, strict JSON, JSON lines or CSV), prose and progress on stderr.

Every command takes `--format`; whatever a user or a file supplied (paths, CSV values) is printed as
plain text, never as rich markup, with control characters removed, and CSV cells that a spreadsheet
would run as a formula are neutralised.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

NOT_A_DIAGNOSIS = "hamcli is a research tool: these outputs are not a diagnosis."
MAX_MESSAGE = 2000  # a message longer than this is cut: one line, never a megabyte

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: object) -> str:
    """Text safe to print: no terminal escape sequences, bidi overrides or other control characters."""
    return _CONTROL.sub("?", str(text))


def _line(text: object) -> str:
    flat = clean(str(text).replace("\n", " "))
    return flat if len(flat) <= MAX_MESSAGE else flat[:MAX_MESSAGE] + " ..."


def error(message: object) -> None:
    err.print(f"[bold red]Error:[/] {escape(_line(message))}", highlight=False)


def warn(message: object) -> None:
    err.print(f"[yellow]Warning:[/] {escape(_line(message))}", highlight=False)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001, ARG001
    """A `warnings.showwarning` that prints library warnings as one yellow line on stderr."""
    warn(str(message))


def show_warnings_as_lines() -> None:
    """Library warnings become one yellow line on stderr, each time they happen."""
    import warnings

    warnings.showwarning = show_warning
    warnings.simplefilter("always", UserWarning)


def info(message: object) -> None:
    err.print(escape(clean(message)), highlight=False)


def notice() -> None:
    """The not-a-diagnosis line, on stderr for every command that shows predictions or scores."""
    err.print(NOT_A_DIAGNOSIS, style="dim", highlight=False)


def model_source(predictor: Any, ref: str | None) -> None:
    """Say so when the bundled model stands in because no run was named and none exists, and when the model
    computes in a precision other than fp32."""
    from hamcli.runs import BUNDLED_FILE

    if ref is None and predictor.card.path == BUNDLED_FILE:
        info(f"no trained run yet: using the bundled model ({predictor.card.arch}; `hamcli models --default` "
             "describes it)")
    if not predictor.precision.startswith("fp32"):
        warn(f"computing in {predictor.precision}, as asked: faster, and the probabilities differ from fp32's in "
             "the second or third decimal (each output row records the precision)")


def strict(data: Any) -> Any:
    """`data` with every NaN or infinite float replaced by None, so the JSON parses anywhere."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {str(k): strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict(v) for v in data]
    if hasattr(data, "item") and callable(data.item):  # numpy scalars
        return strict(data.item())
    if data is None or isinstance(data, (str, int, bool)):
        return data
    return str(data)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(strict(data), indent=2, allow_nan=False) + "\n")


def print_jsonl(data: Any) -> None:
    sys.stdout.write(json.dumps(strict(data), allow_nan=False) + "\n")
    sys.stdout.flush()


def csv_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet runs as a formula (OWASP's advice: prefix with a quote)."""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    text = clean("" if value is None else value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class CsvWriter:
    """CSV rows on stdout, header first, flushed as they come (for pipelines)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.writer = csv.writer(sys.stdout)
        self.writer.writerow(columns)

    def row(self, values: Iterable[Any]) -> None:
        self.writer.writerow([csv_cell(v) for v in values])
        sys.stdout.flush()


def print_csv(columns: Sequence[str], rows: Iterable[Iterable[Any]]) -> None:
    writer = CsvWriter(columns)
    for row in rows:
        writer.row(row)


def table(title: str, columns: Sequence[str], numeric: Sequence[str] = (), keep: Sequence[str] = ()) -> Table:
    """A table whose cells wrap instead of being cut short; `numeric` and `keep` columns never wrap."""
    t = Table(title=escape(clean(title)))
    for col in columns:
        t.add_column(col, justify="right" if col in numeric else "left", no_wrap=col in numeric or col in keep,
                     overflow="fold")
    return t


def add_row(t: Table, values: Iterable[Any]) -> None:
    t.add_row(*(escape(clean(v)) for v in values))


def print_table(t: Table) -> None:
    """Print `t` whole: numbers and names are never cut. A pipe or file gets the table at its natural width;
    a terminal gets it at the terminal's width, wrapping only the prose columns."""
    for column in t.columns:
        if column.no_wrap:
            cells = [str(c) for c in column.cells] + [str(column.header)]
            column.min_width = max(len(line) for c in cells for line in c.splitlines() or [""])
    if out.is_terminal:
        out.print(t, highlight=False)
    else:  # a pipe or a file: the table at its natural width, nothing wrapped or cut
        natural = Console(width=100_000).measure(t).maximum
        Console(width=max(natural, 20), soft_wrap=True).print(t, highlight=False)


def showing_progress(quiet: bool) -> bool:
    """Progress bars only for a person at a terminal."""
    return not quiet and err.is_terminal


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on stderr while a step runs, for a person at a terminal only."""
    if not err.is_terminal:
        yield
        return
    with err.status(escape(message)):
        yield


@contextmanager
def byte_progress(quiet: bool = False) -> Iterator[Any]:
    """A callback (name, done, total) drawing one download bar per file on stderr."""
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=err,
                        disable=not showing_progress(quiet), transient=True)
    tasks: dict[str, Any] = {}

    def update(name: str, done: int, total: int | None) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(escape(clean(name)), total=total)
        progress.update(tasks[name], completed=done, total=total)

    with progress:
        yield update


@contextmanager
def count_progress(label: str, quiet: bool = False) -> Iterator[Any]:
    """A callback (done, total) drawing one bar on stderr; it appears only once work starts."""
    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err, disable=not showing_progress(quiet), transient=True)
    task = progress.add_task(label, total=None, start=False)
    started = False

    def update(done: int, total: int) -> None:
        nonlocal started
        if not started:
            progress.start()
            progress.start_task(task)
            started = True
        progress.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if started:
            progress.stop()
