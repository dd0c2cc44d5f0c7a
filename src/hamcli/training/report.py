"""A run's human-readable outputs: history.csv, timing.csv, curves.png, metrics.json."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import hamcli.fsio as fsio

TIMING = ("train_seconds", "images_per_s")  # how fast, not what was learnt: timing.csv, not history.csv


def write_reports(run_dir: Path, history: list[dict], best_epoch: int, monitor: str, prefix: str = "val_",
                  calibration: dict | None = None, status: str = "finished") -> None:
    """`prefix`: the validation columns the run selected on (`val_ema_` for the moving average).

    history.csv holds what the run learnt, epoch by epoch, and nothing that depends on how busy the machine
    was: the same seed, options and machine write the same file. Seconds and images per second go to
    timing.csv."""
    if not history:
        return
    table = pd.DataFrame(history)
    with fsio.atomic_path(run_dir / "history.csv") as tmp:
        table.drop(columns=[c for c in TIMING if c in table]).to_csv(tmp, index=False)
    with fsio.atomic_path(run_dir / "timing.csv") as tmp:
        table[["epoch", *(c for c in TIMING if c in table)]].to_csv(tmp, index=False)
    best = history[best_epoch - 1] if best_epoch else {}
    fsio.write_json(run_dir / "metrics.json", {"epochs_run": len(history), "best_epoch": best_epoch,
                                               "monitor": monitor, "weights": "ema" if "ema" in prefix else "raw",
                                               "best": {k.removeprefix(prefix): v for k, v in best.items()
                                                        if k.startswith(prefix) and "ema" not in k[len(prefix):]},
                                               "calibration": calibration, "finished": status == "finished",
                                               "stopped_early": status == "stopped early"})
    plot_curves(table, run_dir / "curves.png")


def plot_curves(table: pd.DataFrame, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, metric, title in zip(axes, ("loss", "accuracy", "balanced_accuracy"),
                                 ("loss", "accuracy", "balanced accuracy"), strict=True):
        ax.plot(table["epoch"], table[f"train_{metric}"], marker="o", label="train")
        if f"val_{metric}" in table:  # a refit has no validation rows
            ax.plot(table["epoch"], table[f"val_{metric}"], marker="o", label="val")
        if f"val_ema_{metric}" in table:
            ax.plot(table["epoch"], table[f"val_ema_{metric}"], marker=".", label="val (EMA)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    with fsio.atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
