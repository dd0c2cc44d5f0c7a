"""`hamcli predict`."""

from __future__ import annotations

import sys
from typing import Optional

import typer

import hamcli.cli.render as render
from hamcli.cli.inputs import expand
from hamcli.cli.options import choice, flag


def predict(
    images: list[str] = typer.Argument(..., help="Image files, folders, globs, or - to read paths from stdin."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Run name, run folder or checkpoint "
                                        "(default: the latest run, else the bundled model)."),
    top_k: int = typer.Option(3, "--top-k", "-k"),
    fmt: str = typer.Option("table", "--format", "-f", **choice(("table", "json", "jsonl", "csv"), "Output format.")),
    batch_size: int = typer.Option(64, "--batch-size"),
    tta: bool = flag("--tta", help="Average over flips and 90-degree rotations."),
    device: str = typer.Option("auto", "--device", **choice(("auto", "cpu", "cuda", "mps"), "Device.")),
) -> None:
    """Classify images with a trained model (before the first run, the LeNet bundled with hamcli: balanced
    accuracy 0.61 on held-out HAM10000 lesions, research use only); rows keep the input order."""
    import csv
    import json

    from hamcli.errors import UsageError
    from hamcli.inference.predictor import Failure, Predictor

    if fmt not in ("table", "json", "jsonl", "csv"):
        raise UsageError(f"--format {fmt!r}: choose table, json, jsonl or csv")
    items = expand(images)
    if not items:
        raise UsageError("no images given (stdin was empty)")
    predictor = Predictor.load(model, device=device)
    render.model_source(predictor, model)
    top_k = max(1, min(top_k, len(predictor.classes)))
    writer = csv.writer(sys.stdout) if fmt == "csv" else None
    if writer:
        writer.writerow(["path", "code", "name", "probability", *(f"p_{c}" for c in predictor.classes)])
    failed = 0

    def emit(row) -> None:  # noqa: ANN001
        nonlocal failed
        if isinstance(row, Failure):
            failed += 1
            render.error(row.reason)
        elif fmt == "jsonl":
            sys.stdout.write(json.dumps(row.as_dict()) + "\n")
            sys.stdout.flush()
        elif writer:
            writer.writerow([row.source, row.code, row.name, f"{row.probability:.6f}",
                             *(f"{row.probabilities[c]:.6f}" for c in predictor.classes)])
            sys.stdout.flush()

    rows = predictor.predict_many(items, top_k=top_k, batch_size=batch_size, tta=tta, chunk=256, on_result=emit)
    good = [r for r in rows if not isinstance(r, Failure)]
    if fmt == "json":
        render.print_json([r.as_dict() for r in good])
    elif fmt == "table":
        from rich.table import Table

        table = Table(title=f"{predictor.card.arch} from {predictor.card.path}")
        table.add_column("image", overflow="fold", ratio=3)
        table.add_column("class", no_wrap=True)
        table.add_column("p", justify="right", no_wrap=True)
        table.add_column("name", ratio=2)
        table.add_column(f"top {top_k}", ratio=2)
        for r in good:
            table.add_row(r.source, r.code, f"{r.probability:.3f}", r.name,
                          ", ".join(f"{c} {p:.2f}" for c, p in r.top_k))
        render.out.print(table)
        render.out.print(render.NOT_A_DIAGNOSIS, style="dim")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(predict)
