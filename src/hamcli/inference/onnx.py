"""Predicting with an exported ONNX model (`hamcli predict --model model.onnx`), through onnxruntime.

The file carries what a checkpoint carries (classes, the input recipe, the hamcli version) in its
metadata, and its graph ends in the probabilities after the model's temperature and prior shift, so
the rows are the ones the torch model gives, to float rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hamcli.data.preprocess import Preprocess, to_float
from hamcli.errors import ModelError
from hamcli.inference.postprocess import Postprocess
from hamcli.inference.predictor import Predictor
from hamcli.models.checkpoint import CheckpointInfo


class OnnxPredictor(Predictor):
    """A Predictor whose forward pass is an onnxruntime session."""

    def __init__(self, path: Path) -> None:  # noqa: D107 - no super().__init__: there is no torch model
        import torch

        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(f"{path}: predicting with ONNX needs onnxruntime: run `pip install "
                             "'hamcli[onnx]'`") from None
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            meta = self.session.get_modelmeta().custom_metadata_map
            preprocess = Preprocess.from_dict(json.loads(meta["preprocess"]), path)
            classes = tuple(json.loads(meta["classes"]))
        except (KeyError, ValueError):
            raise ModelError(f"{path}: not an ONNX model exported by hamcli (no classes or preprocessing in its "
                             "metadata); export it with `hamcli export`") from None
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a damaged file
            raise ModelError(f"{path}: onnxruntime cannot load it ({str(exc)[:160]})") from None
        self.card = CheckpointInfo(meta.get("arch", "onnx"), classes, preprocess, "", "", Path(path))
        self.ckpt_meta = {"onnx": dict(meta)}
        self.model = None
        self.post = Postprocess()  # in the graph already
        self.mean, self.std = torch.tensor(preprocess.mean), torch.tensor(preprocess.std)

    def probabilities(self, images: np.ndarray, batch_size: int = 64, tta: bool = False) -> np.ndarray:
        import torch

        if tta:
            raise ModelError(f"{self.card.path}: --tta is for torch checkpoints; an ONNX model runs one view")
        out = []
        for start in range(0, len(images), batch_size):
            x = to_float(torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])), self.mean,
                         self.std)
            out.append(self.session.run(["probabilities"], {"image": x.numpy()})[0])
        return np.concatenate(out) if out else np.empty((0, len(self.classes)), dtype=np.float32)
