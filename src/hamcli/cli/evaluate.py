"""`hamcli evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import hamcli.cli.render as render
from hamcli.cli.options import choice, flag, inference_precision, json_alias, output_format

SUMMARY_ROWS = [("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro F1"),
                ("weighted_f1", "weighted F1"), ("macro_roc_auc", "macro ROC AUC (one vs rest)"),
                ("melanoma_sensitivity", "melanoma sensitivity"), ("melanoma_specificity", "melanoma specificity"),
                ("melanoma_sensitivity_at_90_specificity", "melanoma sensitivity at 90% specificity"),
                ("ece", "expected calibration error")]
COMPACT = [("accuracy", "acc"), ("balanced_accuracy", "bal.acc"), ("macro_f1", "F1"),
           ("macro_roc_auc", "AUC"), ("melanoma_sensitivity", "mel.sens"), ("melanoma_specificity", "mel.spec"),
           ("ece", "ECE")]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _ci(m: dict, key: str) -> str:
    lo_hi = m.get("ci95", {}).get(key)
    return f"{_fmt(lo_hi[0])}-{_fmt(lo_hi[1])}" if lo_hi else ""


def _render_one(result: dict) -> None:
    from hamcli.classes import CLASS_CODES

    m = result["metrics"]
    base = m["baseline"]
    ci = bool(m.get("ci95"))
    columns = ["metric", "value", *([f"95% CI (by {m['ci_resampled_by']})"] if ci else []), f"always '{base['class']}'"]
    table = render.table(f"{result['run']} ({result['arch']}) on {result['data']}: {m['images']} images"
                         f"{' (TTA)' if result['tta'] else ''}", columns, numeric=columns[1:])
    for key, label in SUMMARY_ROWS:
        if key == "balanced_accuracy" and m["classes_absent"]:
            label += f" (over {m['classes_averaged']} classes: no {', '.join(m['classes_absent'])})"
        render.add_row(table, [label, _fmt(m[key]), *([_ci(m, key)] if ci else []), _fmt(base.get(key))])
    render.print_table(table)
    per = render.table("per class", ("class", "precision", "recall", "F1", "ROC AUC", "support"),
                       numeric=("precision", "recall", "F1", "ROC AUC", "support"))
    for code, r in m["per_class"].items():
        render.add_row(per, (code, _fmt(r["precision"]), _fmt(r["recall"]), _fmt(r["f1"]), _fmt(r["roc_auc"]),
                             r["support"]))
    render.print_table(per)
    cm = render.table("confusion matrix (rows: true, columns: predicted)", ("", *CLASS_CODES), numeric=CLASS_CODES)
    for code, row in zip(CLASS_CODES, m["confusion_matrix"], strict=True):
        render.add_row(cm, (code, *row))
    render.print_table(cm)


def _rows(results: list[dict]) -> list[tuple[str, dict, dict | None]]:
    """(label, metrics, mean/std or None) for each run, and for each fold of a family after it."""
    rows = []
    for r in results:
        if r.get("members"):
            kind = r.get("ensemble_of", f"{len(r['members'])} models")
            rows.append((f"{r['run']} (ensemble of {kind})", r["metrics"], None))
            rows.extend((f"  {m.get('label', m['run'])}", m["metrics"], None) for m in r["members"])
            rows.append((f"  {kind.split()[1]}: mean ± std", {}, r["metrics_mean_std"]))
        else:
            rows.append((r["run"], r["metrics"], None))
    return rows


def _render_compare(results: list[dict]) -> None:
    datasets = sorted({r["data"] for r in results})
    ci = any(r["metrics"].get("ci95") for r in results)
    table = render.table(f"comparison on {', '.join(datasets)}", ("run", *(label for _, label in COMPACT)),
                         numeric=[label for _, label in COMPACT], keep=("run",))
    for label, m, stats in _rows(results):
        if stats:
            render.add_row(table, (label, *(f"{_fmt(stats[k]['mean'])} ± {_fmt(stats[k]['std'])}" for k, _ in COMPACT)))
        else:
            render.add_row(table, (label, *(_fmt(m[k]) + (f"\n({_ci(m, k)})" if ci and _ci(m, k) else "")
                                            for k, _ in COMPACT)))
    render.print_table(table)
    render.info("acc accuracy, bal.acc balanced accuracy, F1 macro F1, AUC macro one-vs-rest ROC AUC, "
                "mel.sens/mel.spec melanoma sensitivity/specificity, ECE expected calibration error"
                + ("; in brackets, 95% bootstrap intervals" if ci else ""))
    if len(datasets) > 1:
        render.warn(f"these runs were scored on different images ({'; '.join(datasets)}): their figures are "
                    "not directly comparable")


def _plain(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k not in ("predictions", "probs", "scores", "y_true")}
    if result.get("members"):
        out["members"] = [_plain(m) for m in result["members"]]
    return out


def evaluate(
    runs: Optional[list[str]] = typer.Argument(None, help="Run names or folders, K-fold families, checkpoint "
                                               "files (default: the run finished last)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Score a labelled folder (metadata CSV + images) "
                                        "instead of the run's test split."),
    split: str = typer.Option("test", "--split", **choice(("test", "val"), "Which held-out rows of the run's "
                                                         "prepared dataset: test, or the validation rows it "
                                                         "chose its epoch on (for choosing settings honestly).")),
    ci: bool = flag("--ci", help="Bootstrap 95% intervals, resampled by lesion."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=10, help="Bootstrap resamples for --ci."),
    tta: bool = flag("--tta", help="Average over flips (and quarter turns for square inputs)."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Write per-image predictions (CSV)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write confusion matrix and ROC PNGs to DIR."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    precision: str = inference_precision(),
    fmt: str = output_format(),
    as_json: bool = json_alias(),
) -> None:
    """Score runs with the metrics a clinical reviewer asks for, beside the majority baseline."""
    import pandas as pd

    import hamcli.evaluation.scoring as scoring
    import hamcli.fsio as fsio

    fmt = "json" if as_json else fmt
    refs = runs or [None]
    with render.status("scoring" + (f" and {bootstrap} bootstrap resamples" if ci else "")):
        results = [scoring.evaluate(ref, data=data, ci=ci, tta=tta, bootstrap=bootstrap, batch_size=batch_size,
                                    split=split, precision=precision) for ref in refs]
    flat = [m for r in results for m in ([r, *r.get("members", [])])]
    if predictions is not None:
        frames = [r["predictions"].assign(run=r["run"]) if len(flat) > 1 else r["predictions"] for r in flat]
        with fsio.atomic_path(predictions) as tmp:
            pd.concat(frames).to_csv(tmp, index=False)
        render.info(f"predictions written to {predictions}")
    if plot is not None:
        import hamcli.evaluation.plots as plots

        for r in flat:
            stem = r["run"] if len(flat) > 1 else "evaluate"
            title = f"{r['run']} ({r['arch']})"
            plots.confusion_matrix_png(r["metrics"]["confusion_matrix"], plot / f"{stem}-confusion.png", title)
            plots.roc_png(r["y_true"], r["scores"], plot / f"{stem}-roc.png", title)
        render.info(f"plots written to {plot}")
    if fmt == "json":
        render.print_json([_plain(r) for r in results] if len(results) > 1 else _plain(results[0]))
    elif fmt == "csv":
        keys = [k for k, _ in SUMMARY_ROWS]
        render.print_csv(["run", "data", "images", *keys],
                         ([r["run"] + (" (ensemble)" if r.get("members") else ""), r["data"], r["metrics"]["images"],
                           *(r["metrics"][k] for k in keys)] for r in flat))
    elif len(results) == 1 and not results[0].get("members"):
        _render_one(results[0])
    else:
        _render_compare(results)
    for r in flat:
        if r.get("seen_unrecorded"):
            render.warn(f"{r['run']}: the file does not record which images its model trained or was validated on "
                        "(an ONNX file exported before hamcli recorded them): none could be left out; export it "
                        "again")
        if r["left_out_seen"]:
            render.warn(f"{r['run']}: {r['left_out_seen']} image(s) left out: the model was trained or validated "
                        "on them")
        if r["skipped"]:
            render.warn(f"{r['run']}: {len(r['skipped'])} image(s) skipped: " + "; ".join(r["skipped"][:5]))
        if r["metrics"]["classes_absent"]:
            render.warn(f"{r['run']}: no {', '.join(r['metrics']['classes_absent'])} image in {r['data']}: balanced "
                        f"accuracy and macro F1 average over {r['metrics']['classes_averaged']} classes")
    render.notice()


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
