"""PNG figures for `hamcli evaluate --plot`: confusion matrix and one-vs-rest ROC curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import hamcli.fsio as fsio
from hamcli.classes import CLASS_CODES, NUM_CLASSES


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, target: Path) -> Path:  # noqa: ANN001
    with fsio.atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return target


def confusion_matrix_png(cm: list[list[int]], target: Path, title: str) -> Path:
    plt = _pyplot()
    cm_arr = np.asarray(cm, dtype=float)
    rows = cm_arr.sum(1, keepdims=True)
    norm = np.divide(cm_arr, rows, out=np.zeros_like(cm_arr), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(NUM_CLASSES), CLASS_CODES)
    ax.set_yticks(range(NUM_CLASSES), CLASS_CODES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            ax.text(j, i, f"{int(cm_arr[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, label="fraction of true class")
    return _save(fig, target)


def roc_png(y_true: np.ndarray, probs: np.ndarray, target: Path, title: str) -> Path:
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    for k, code in enumerate(CLASS_CODES):
        positives = y_true == k
        if positives.any() and not positives.all():
            fpr, tpr, _ = roc_curve(positives, probs[:, k])
            ax.plot(fpr, tpr, label=code)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return _save(fig, target)
