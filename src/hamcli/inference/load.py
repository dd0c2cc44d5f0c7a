"""What a model reference loads as: one run's Predictor, or an Ensemble (a K-fold family, or a checkpoint
file holding several members, as the bundled model may)."""

from __future__ import annotations

from pathlib import Path

from hamcli.inference.ensemble import Ensemble
from hamcli.inference.predictor import Predictor, read_checkpoint
from hamcli.runs import is_family, resolve_model


def load_model(ref: str | Path | None = None, device: str = "auto", precision: str = "fp32") -> Predictor:
    """A run name or folder, a checkpoint file, a K-fold family, an exported .onnx file, "bundled", or None for
    the default model (the run finished last, else the bundled model). `precision` bf16 (or fp16 on a GPU) is
    faster and changes probabilities in the second or third decimal; the default, fp32, gives every image the
    same probabilities in any batch."""
    if ref is not None and str(ref).lower().endswith(".onnx"):
        from hamcli.inference.onnx import OnnxPredictor

        return OnnxPredictor(Path(ref))
    path = resolve_model(ref)
    if path.is_dir() and is_family(path):
        return Ensemble.load_family(path, device, precision)
    ckpt, path = read_checkpoint(path)
    if "members" in ckpt:
        return Ensemble.from_checkpoint(ckpt, path, device, precision)
    return Predictor.from_checkpoint(ckpt, path, device, precision)
