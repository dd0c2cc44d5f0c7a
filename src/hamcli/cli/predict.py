"""`hamcli predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import hamcli.cli.render as render
from hamcli.cli.inputs import expand
from hamcli.cli.options import choice, flag, output_format
from hamcli.models.precision import DEVICES


def predict(
    images: list[str] = typer.Argument(..., help="Image files, folders, globs, or - to read paths from stdin."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Run name or folder, K-fold family, "
                                        "checkpoint file, or bundled (default: the run started last, else "
                                        "the bundled model)."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="How many classes to list per image."),
    fmt: str = output_format(("table", "json", "jsonl", "csv")),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    tta: bool = flag("--tta", help="Average over flips (and quarter turns for square inputs)."),
    device: str = typer.Option("auto", "--device", **choice(DEVICES, "Device.")),
    labels: Optional[Path] = typer.Option(None, "--labels", help="A metadata CSV (image_id, dx) with the true "
                                          "classes: each row then shows its true class, and a tally follows."),
    quiet: bool = flag("--quiet", "-q", help="No progress bar."),
) -> None:
    """Classify images with a trained model (before the first run, the model bundled with hamcli); rows keep
    the input order. Research use only: not a diagnosis."""
    from hamcli.inference.load import load_model
    from hamcli.inference.predictor import Failure

    items = expand(images)
    truth = _truth(labels) if labels else {}
    predictor = load_model(model, device=device)
    render.model_source(predictor, model)
    top_k = min(top_k, len(predictor.classes))
    writer = render.CsvWriter(["path", "code", "name", "probability", *(f"p_{c}" for c in predictor.classes)]
                              ) if fmt == "csv" else None
    failed = 0

    def emit(row) -> None:  # noqa: ANN001
        nonlocal failed
        if isinstance(row, Failure):
            failed += 1
            render.error(row.reason)
        elif fmt == "jsonl":
            render.print_jsonl(row.as_dict())
        elif writer:
            writer.row([row.source, row.code, row.name, row.probability,
                        *(row.probabilities[c] for c in predictor.classes)])

    with render.count_progress("predicting", quiet or fmt in ("jsonl", "csv")) as progress:
        done = 0

        def on_result(row) -> None:  # noqa: ANN001
            nonlocal done
            done += 1
            emit(row)
            if done % 16 == 0 or done == len(items):
                progress(done, len(items))

        rows = predictor.predict_many(items, top_k=top_k, batch_size=batch_size, tta=tta, chunk=256,
                                      on_result=on_result)
    good = [r for r in rows if not isinstance(r, Failure)]
    true = {r.source: truth.get(Path(r.source).stem) for r in good}
    if fmt == "json":
        render.print_json([{**r.as_dict(), **({"true_dx": true[r.source]} if truth else {})} for r in good])
    elif fmt == "table" and good:
        columns = ("image", "class", "p", "name", f"top {top_k}", *(("true", "verdict") if truth else ()))
        table = render.table(f"{predictor.card.arch} from {predictor.card.path}", columns, numeric=("p",))
        for r in good:
            mark = () if not truth else (true[r.source] or "?", "" if true[r.source] is None else
                                         "right" if true[r.source] == r.code else "wrong")
            render.add_row(table, (r.source, r.code, f"{r.probability:.3f}", r.name,
                                   ", ".join(f"{c} {p:.2f}" for c, p in r.top_k), *mark))
        render.print_table(table)
    known = [r for r in good if true.get(r.source)]
    if known:
        right = sum(true[r.source] == r.code for r in known)
        render.info(f"{right} of {len(known)} right against {labels} (a handful of images says little: "
                    "`hamcli evaluate --data` scores a labelled folder properly)")
    if good:
        render.notice()
    if failed:
        render.error(f"{failed} of {len(items)} image(s) could not be read" +
                     ("; nothing was predicted" if not good else ""))
        raise typer.Exit(1)


def _truth(path: Path) -> dict[str, str]:
    from hamcli.data.metadata import read_metadata

    table = read_metadata(Path(path)).table
    return dict(zip(table["image_id"], table["dx"], strict=True))


def register(app: typer.Typer) -> None:
    app.command()(predict)
