"""Classification metrics, from scikit-learn, in the one class order."""

from __future__ import annotations

import numpy as np

from hamcli.classes import CLASS_CODES, CLASS_INDEX

LABELS = list(range(len(CLASS_CODES)))


def summary(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro F1: the numbers tracked while training."""
    import warnings

    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # predicted classes absent from y_true
        balanced = balanced_accuracy_score(y_true, y_pred)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0)),
    }


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """Always predicting the most common training class (for HAM10000: nv)."""
    majority = int(np.bincount(y_train, minlength=len(LABELS)).argmax())
    return {"class": CLASS_CODES[majority], **summary(y_test, np.full_like(y_test, majority))}


def encode(codes) -> np.ndarray:  # noqa: ANN001 - any iterable of class codes
    return np.array([CLASS_INDEX[c] for c in codes], dtype=np.int64)
