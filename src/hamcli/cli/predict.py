"""`hamcli predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import hamcli.cli.render as render
from hamcli.cli.inputs import expand
from hamcli.cli.options import choice, flag, inference_precision, output_format
from hamcli.models.precision import DEVICES


def predict(
    images: list[str] = typer.Argument(..., help="Image files, folders, globs, or - to read paths from stdin."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Run name or folder, K-fold family, "
                                        "checkpoint file, or bundled (default: the run finished last, else "
                                        "the bundled model)."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="How many classes to list per image."),
    fmt: str = output_format(("table", "json", "jsonl", "csv")),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    tta: bool = flag("--tta", help="Average over flips (and quarter turns for square inputs)."),
    device: str = typer.Option("auto", "--device", **choice(DEVICES, "Device.")),
    precision: str = inference_precision(),
    labels: Optional[Path] = typer.Option(None, "--labels", help="A metadata CSV (image_id, dx) with the true "
                                          "classes: every row then carries true_dx and correct, and a tally "
                                          "follows."),
    quiet: bool = flag("--quiet", "-q", help="No progress bar."),
) -> None:
    """Classify images with a trained model (before the first run, the model bundled with hamcli).

    Rows keep the input order; an image that cannot be read is a row with an `error` (exit code 1). Research
    use only: not a diagnosis."""
    from hamcli.inference.load import load_model
    from hamcli.inference.predictor import Failure

    items = expand(images)
    truth = _truth(labels) if labels else {}
    predictor = load_model(model, device=device, precision=precision)
    render.model_source(predictor, model)
    top_k = min(top_k, len(predictor.classes))
    seen = set(predictor.ckpt_meta.get("data", {}).get("seen_image_ids") or ())  # what the model learnt from
    columns = ["path", "image_id", "code", "name", "probability", *(f"p_{c}" for c in predictor.classes),
               "precision", *(("true_dx", "correct") if labels else ()), "seen", "error"]
    writer = render.CsvWriter(columns) if fmt == "csv" else None
    failed = 0
    records: list[dict] = []  # each row's record, in input order, as it is emitted

    def record(row) -> dict:  # noqa: ANN001 - a Prediction or a Failure
        image_id = Path(row.source).stem if not row.source.startswith("<") else None
        if isinstance(row, Failure):
            return {"path": row.source, "image_id": image_id, "error": row.reason}
        out = {**row.as_dict(), "image_id": image_id, "seen": image_id in seen if seen else None}
        if labels:
            true = truth.get(image_id)
            out.update(true_dx=true, correct=None if true is None else true == row.code)
        return out

    def emit(row) -> None:  # noqa: ANN001
        nonlocal failed
        if isinstance(row, Failure):
            failed += 1
            render.error(row.reason)
        data = record(row)
        records.append(data)
        if fmt == "jsonl":
            render.print_jsonl(data)
        elif writer:
            probs = data.get("probabilities", {})
            writer.row([data.get(c) if not c.startswith("p_") else probs.get(c[2:]) for c in columns])

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
    if fmt == "json":
        render.print_json(records)
    elif fmt == "table" and good:
        any_seen = any(d.get("seen") for d in records)
        columns = ("image", "class", "p", "name", f"top {top_k}", *(("true", "verdict") if labels else ()),
                   *(("seen in training",) if any_seen else ()))
        table = render.table(f"{predictor.card.arch} from {predictor.card.path}", columns, numeric=("p",))
        for r, data in zip(rows, records, strict=True):
            if isinstance(r, Failure):  # in its place in the input order, with why (also said on stderr)
                render.add_row(table, (r.source, "error", "", r.reason.removeprefix(f"{r.source}: "), "",
                                       *(("", "") if labels else ()), *(("",) if any_seen else ())))
                continue
            mark = () if not labels else (data["true_dx"] or "?", "" if data["true_dx"] is None else
                                          "right" if data["correct"] else "wrong")
            render.add_row(table, (r.source, r.code, f"{r.probability:.3f}", r.name,
                                   ", ".join(f"{c} {p:.2f}" for c, p in r.top_k), *mark,
                                   *(("yes" if data["seen"] else "",) if any_seen else ())))
        render.print_table(table)
    known = [d for d in records if d.get("correct") is not None]
    if known:
        right = sum(d["correct"] for d in known)
        fresh = [d for d in known if not d.get("seen")]
        render.info(f"{right} of {len(known)} right against {labels}" +
                    (f"; of the {len(fresh)} the model never trained or validated on, "
                     f"{sum(d['correct'] for d in fresh)} right" if len(fresh) < len(known) else "") +
                    " (a handful of images says little: `hamcli evaluate --data` scores a labelled folder properly)")
    if any(d.get("seen") for d in records):
        render.info(f"{sum(bool(d.get('seen')) for d in records)} image(s) were among the model's training or "
                    "validation images (`seen`): their answers say nothing about how it does on new ones")
    if labels and len(known) < len(good):
        render.warn(f"{len(good) - len(known)} image(s) have no row in {labels} (matched by file name without "
                    "extension against image_id)")
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
