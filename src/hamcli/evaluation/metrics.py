"""Classification metrics, from scikit-learn, in the one class order."""

from __future__ import annotations

import numpy as np

from hamcli.classes import CLASS_CODES, CLASS_INDEX, NUM_CLASSES

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


def with_melanoma(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    """`summary`, melanoma sensitivity and specificity (None where no case is, or every case is, melanoma):
    what an operating point trades."""
    mel = CLASS_INDEX["mel"]
    cases = y_true == mel
    return {**summary(y_true, y_pred),
            "melanoma_sensitivity": float((y_pred[cases] == mel).mean()) if cases.any() else None,
            "melanoma_specificity": float((y_pred[~cases] != mel).mean()) if (~cases).any() else None}


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class confidence, equal-width bins.

    Written by hand: scikit-learn has calibration curves for binary problems only.
    """
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(ece)


def roc_auc_per_class(y_true: np.ndarray, probs: np.ndarray) -> dict[int, float]:
    """One-vs-rest ROC AUC for each class that has both positives and negatives in y_true."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for k in LABELS:
        positives = y_true == k
        if positives.any() and not positives.all():
            out[k] = float(roc_auc_score(positives, probs[:, k]))
    return out


def sensitivity_at_specificity(positive: np.ndarray, score: np.ndarray, specificity: float) -> float:
    """The best sensitivity of a threshold on `score` whose specificity is at least `specificity`."""
    from sklearn.metrics import roc_curve

    if positive.all() or not positive.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(positive, score)
    allowed = fpr <= 1 - specificity + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def full_report(y_true: np.ndarray, probs: np.ndarray, train_counts: list[int] | None = None,
                scores: np.ndarray | None = None) -> dict:
    """Everything `hamcli evaluate` reports for one set of predictions. Decisions, recall and calibration
    (ECE) come from `probs`, the probabilities a user sees; ranking metrics (ROC AUC, melanoma sensitivity at
    90 % specificity) from `scores`, the same before any decision offset, so that moving an operating point
    cannot move them (`probs` where no scores are given)."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    scores = probs if scores is None else scores
    y_pred = probs.argmax(1)
    present = np.unique(y_true)
    prec, rec, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
    auc = roc_auc_per_class(y_true, scores)
    cm = confusion_matrix(y_true, y_pred, labels=LABELS)
    mel = CLASS_INDEX["mel"]
    tp, fn = cm[mel, mel], cm[mel].sum() - cm[mel, mel]
    fp = cm[:, mel].sum() - tp
    tn = cm.sum() - tp - fn - fp
    headline = summary(y_true, y_pred)
    majority = (int(np.argmax(train_counts)) if train_counts is not None
                else int(np.bincount(y_true, minlength=NUM_CLASSES).argmax()))
    baseline = summary(y_true, np.full_like(y_true, majority))
    absent = [CLASS_CODES[k] for k in LABELS if k not in set(present.tolist())]
    return {
        "images": int(len(y_true)),
        **headline,
        "classes_averaged": int(len(present)),  # balanced accuracy and macro F1 average over these
        "classes_absent": absent,
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "macro_roc_auc": float(np.mean(list(auc.values()))) if auc else float("nan"),
        "melanoma_sensitivity": float(tp / (tp + fn)) if tp + fn else float("nan"),
        "melanoma_specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
        "melanoma_sensitivity_at_90_specificity": sensitivity_at_specificity(y_true == mel, scores[:, mel], 0.90),
        "ece": expected_calibration_error(y_true, probs),
        "baseline": {"class": CLASS_CODES[majority], **baseline},
        "per_class": {code: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                             "support": int(support[i]), "roc_auc": auc.get(i),
                             **({} if i in auc else {"note": "no test image of this class: recall and ROC AUC "
                                                             "are undefined" if not support[i] else
                                                             "every test image is of this class"})}
                      for i, code in enumerate(CLASS_CODES)},
        "confusion_matrix": cm.tolist(),
    }


BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc", "melanoma_sensitivity")


def bootstrap_ci(y_true: np.ndarray, probs: np.ndarray, groups: np.ndarray, n: int = 1000, seed: int = 0,
                 scores: np.ndarray | None = None) -> dict[str, tuple[float, float]]:
    """95% percentile intervals, resampling whole groups (lesions) with replacement; AUC from `scores` (as
    `full_report`)."""
    from sklearn.metrics import recall_score, roc_auc_score

    scores = probs if scores is None else scores
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    mel = CLASS_INDEX["mel"]
    samples: dict[str, list[float]] = {k: [] for k in BOOTSTRAP_METRICS}
    for _ in range(n):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(uniq), len(uniq))])
        yt, yp, ss = y_true[idx], probs[idx].argmax(1), scores[idx]
        for key, value in summary(yt, yp).items():
            samples[key].append(value)
        aucs = [roc_auc_score(yt == k, ss[:, k]) for k in LABELS if 0 < (yt == k).sum() < len(yt)]
        samples["macro_roc_auc"].append(float(np.mean(aucs)) if aucs else np.nan)
        if (yt == mel).any():
            samples["melanoma_sensitivity"].append(
                float(recall_score(yt == mel, yp == mel, zero_division=0)))
    return {k: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
            for k, v in samples.items() if v}
