"""`hamcli evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import hamcli.cli.render as render
from hamcli.cli.options import choice, flag

SUMMARY_ROWS = [("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro F1"),
                ("weighted_f1", "weighted F1"), ("macro_roc_auc", "macro ROC AUC (OvR)"),
                ("melanoma_sensitivity", "melanoma sensitivity"), ("melanoma_specificity", "melanoma specificity"),
                ("ece", "expected calibration error")]


def _fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"  # NaN check


def _render_one(result: dict) -> None:
    from rich.table import Table

    from hamcli.classes import CLASS_CODES

    m = result["metrics"]
    ci = m.get("ci95", {})
    base = m["baseline"]
    table = Table(title=f"{result['run']} ({result['arch']}) on {result['data']}: {m['images']} images"
                        f"{' (TTA)' if result['tta'] else ''}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if ci:
        table.add_column(f"95% CI (by {m['ci_resampled_by']})", justify="right")
    table.add_column(f"always '{base['class']}'", justify="right")
    for key, label in SUMMARY_ROWS:
        row = [label, _fmt(m[key])]
        if ci:
            row.append(f"{_fmt(ci[key][0])}-{_fmt(ci[key][1])}" if key in ci else "")
        row.append(_fmt(base[key]) if key in base else "")
        table.add_row(*row)
    render.out.print(table)
    per = Table(title="per class")
    for col in ("class", "precision", "recall", "F1", "ROC AUC", "support"):
        per.add_column(col, justify="right" if col != "class" else "left")
    for code, r in m["per_class"].items():
        per.add_row(code, _fmt(r["precision"]), _fmt(r["recall"]), _fmt(r["f1"]), _fmt(r["roc_auc"]),
                    str(r["support"]))
    render.out.print(per)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for code in CLASS_CODES:
        cm.add_column(code, justify="right")
    for code, row in zip(CLASS_CODES, m["confusion_matrix"], strict=True):
        cm.add_row(code, *(str(v) for v in row))
    render.out.print(cm)
    if result["left_out_seen"]:
        render.warn(f"{result['left_out_seen']} image(s) left out: the model was trained or validated on them")
    if result["skipped"]:
        render.warn(f"{len(result['skipped'])} image(s) skipped: " + "; ".join(result["skipped"][:5]))


COMPACT = [("accuracy", "acc"), ("balanced_accuracy", "bal.acc"), ("macro_f1", "F1"),
           ("macro_roc_auc", "AUC"), ("melanoma_sensitivity", "mel.sens"), ("melanoma_specificity", "mel.spec"),
           ("ece", "ECE")]


def _render_compare(results: list[dict]) -> None:
    from rich.table import Table

    datasets = sorted({(m["data"]) for r in results for m in (r["members"] if r.get("family") else [r])})
    table = Table(title=f"comparison on {', '.join(datasets)}")
    table.add_column("run", no_wrap=True)
    for _, label in COMPACT:
        table.add_column(label, justify="right")
    for r in results:
        if r.get("family"):
            stats = r["metrics_mean_std"]
            table.add_row(f"{r['run']} ({len(r['members'])} folds)",
                          *(f"{_fmt(stats[k]['mean'])}±{_fmt(stats[k]['std'])}" for k, _ in COMPACT))
        else:
            table.add_row(r["run"], *(_fmt(r["metrics"][k]) for k, _ in COMPACT))
    render.out.print(table)
    render.err.print("acc accuracy, bal.acc balanced accuracy, F1 macro F1, AUC macro one-vs-rest ROC AUC, "
                     "mel.sens/mel.spec melanoma sensitivity/specificity, ECE expected calibration error",
                     style="dim")


def _plain(result: dict) -> dict:
    if result.get("family"):
        return {**result, "members": [_plain(m) for m in result["members"]]}
    return {k: v for k, v in result.items() if k not in ("predictions", "probs", "y_true")}


def evaluate(
    runs: Optional[list[str]] = typer.Argument(None, help="Run names, run folders or checkpoint files "
                                               "(default: the latest run, else the bundled model)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Score a labelled folder (metadata CSV + images) "
                                        "instead of the run's test split."),
    split: str = typer.Option("test", "--split", **choice(("test", "val"), "Which held-out rows of the run's "
                                                         "prepared dataset: test, or the validation rows it "
                                                         "chose its epoch on (for choosing settings honestly).")),
    ci: bool = flag("--ci", help="Bootstrap 95% intervals, resampled by lesion."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for --ci."),
    tta: bool = flag("--tta", help="Average over flips and 90-degree rotations."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Write per-image predictions (CSV)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write confusion matrix and ROC PNGs to DIR."),
    batch_size: int = typer.Option(64, "--batch-size"),
    as_json: bool = flag("--json", help="Print JSON on stdout."),
) -> None:
    """Score runs with the metrics a clinical reviewer asks for, beside the majority baseline."""
    import pandas as pd

    import hamcli.evaluate.scoring as evaluation
    import hamcli.fsio as fsio

    refs = runs or [None]
    results = [evaluation.evaluate(ref, data=data, ci=ci, tta=tta, bootstrap=bootstrap, batch_size=batch_size,
                                   split=split) for ref in refs]
    flat = [m for r in results for m in (r["members"] if r.get("family") else [r])]
    if predictions is not None:
        frames = [r["predictions"].assign(run=r["run"]) if len(flat) > 1 else r["predictions"] for r in flat]
        with fsio.atomic_path(predictions) as tmp:
            pd.concat(frames).to_csv(tmp, index=False)
        render.info(f"predictions written to {predictions}")
    if plot is not None:
        import hamcli.evaluate.plots as plots

        for r in flat:
            stem = r["run"] if len(flat) > 1 else "evaluate"
            title = f"{r['run']} ({r['arch']})"
            plots.confusion_matrix_png(r["metrics"]["confusion_matrix"], plot / f"{stem}-confusion.png", title)
            plots.roc_png(r["y_true"], r["probs"], plot / f"{stem}-roc.png", title)
        render.info(f"plots written to {plot}")
    if as_json:
        render.print_json([_plain(r) for r in results] if len(results) > 1 else _plain(results[0]))
        return
    if len(results) == 1 and not results[0].get("family"):
        _render_one(results[0])
    else:
        _render_compare(results)
    render.err.print(render.NOT_A_DIAGNOSIS, style="dim")


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
