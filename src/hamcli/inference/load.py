"""What a model reference loads as: one run's Predictor, or an Ensemble (a K-fold family, or a checkpoint
file holding several members, as the bundled model may)."""

from __future__ import annotations

from pathlib import Path

from hamcli.inference.ensemble import Ensemble
from hamcli.inference.predictor import Predictor, read_checkpoint
from hamcli.runs import is_family, resolve_model


def load_model(ref: str | Path | None = None, device: str = "auto") -> Predictor:
    """A run name or folder, a checkpoint file, a K-fold family, an exported .onnx file, "bundled", or None for
    the default model (the run started last, else the bundled model)."""
    if ref is not None and str(ref).lower().endswith(".onnx"):
        from hamcli.inference.onnx import OnnxPredictor

        return OnnxPredictor(Path(ref))
    path = resolve_model(ref)
    if path.is_dir() and is_family(path):
        return Ensemble.load_family(path, device)
    ckpt, path = read_checkpoint(path)
    if "members" in ckpt:
        return Ensemble.from_checkpoint(ckpt, path, device)
    return Predictor.from_checkpoint(ckpt, path, device)
