"""Predicting with an exported ONNX model (`hamcli predict --model model.onnx`), through onnxruntime.

The file carries what a checkpoint carries (classes, the input recipe, the hamcli version) in its
metadata, and its graph ends in the probabilities after the model's temperature and prior shift, so
the rows are the ones the torch model gives, to float rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hamcli.classes import CLASS_CODES
from hamcli.data.preprocess import Preprocess, size_text, to_float
from hamcli.errors import ModelError
from hamcli.inference.postprocess import Postprocess
from hamcli.inference.predictor import Outputs, Predictor
from hamcli.models.checkpoint import CheckpointInfo
from hamcli.models.precision import Precision


def _data_record(text: str | None, path: Path) -> dict:
    """The data record `hamcli export` writes into the metadata (which images the model saw), checked: a file
    exported before it carried one has none, and says so where it matters (`evaluate --data`)."""
    if text is None:
        return {}
    try:
        record = json.loads(text)
        seen = record.get("seen_image_ids", [])
        counts = record.get("train_counts")
    except (ValueError, AttributeError):
        record = None
    if (not isinstance(record, dict) or not isinstance(seen, list) or not all(isinstance(i, str) for i in seen)
            or not (counts is None or (isinstance(counts, list) and len(counts) == len(CLASS_CODES)
                                       and all(isinstance(c, int) and c >= 0 for c in counts)))):
        raise ModelError(f"{path}: its metadata's data record is damaged (it lists the images the model saw); "
                         "export it again with `hamcli export`")
    return record


class OnnxPredictor(Predictor):
    """A Predictor whose forward pass is an onnxruntime session; checked like a checkpoint when it loads."""

    def __init__(self, path: Path) -> None:  # noqa: D107 - no super().__init__: there is no torch model
        import torch

        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(f"{path}: predicting with ONNX needs onnxruntime: run `pip install "
                             "'hamcli[onnx]'`") from None
        if not Path(path).is_file():
            raise ModelError(f"{path}: not a file; give the .onnx file `hamcli export` wrote")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            meta = self.session.get_modelmeta().custom_metadata_map
            preprocess = Preprocess.from_dict(json.loads(meta["preprocess"]), path)
            classes = json.loads(meta["classes"])
        except (KeyError, ValueError, TypeError, AttributeError):
            raise ModelError(f"{path}: not an ONNX model exported by hamcli (no classes or preprocessing in its "
                             "metadata); export it with `hamcli export`") from None
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a damaged file
            raise ModelError(f"{path}: onnxruntime cannot load it ({str(exc)[:160]})") from None
        if not isinstance(classes, list) or tuple(classes) != CLASS_CODES:
            raise ModelError(f"{path}: its metadata lists the classes {str(classes)[:120]}, not hamcli's "
                             f"{list(CLASS_CODES)}; its probabilities would be read as the wrong classes")
        inputs = {i.name for i in self.session.get_inputs()}
        self.outputs_named = [o.name for o in self.session.get_outputs()]
        if "image" not in inputs or "probabilities" not in self.outputs_named:
            raise ModelError(f"{path}: the graph takes {sorted(inputs)} and gives {self.outputs_named}, not `image` "
                             "-> `probabilities` as `hamcli export` writes; export it again")
        self.card = CheckpointInfo(str(meta.get("arch", "onnx")), tuple(classes), preprocess, "", "", Path(path))
        self.ckpt_meta = {"onnx": dict(meta), "data": _data_record(meta.get("data"), path)}
        self.model = None
        self.prec = Precision("cpu", "fp32", False, "onnxruntime, CPU")
        self.post = Postprocess()  # in the graph already
        self.mean, self.std = torch.tensor(preprocess.mean), torch.tensor(preprocess.std)
        try:
            self.probe()
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own types: a graph that cannot run this input
            raise ModelError(f"{path}: the graph fails on a {size_text(preprocess.size)} test image "
                             f"({str(exc)[:160]}); export it again") from None

    @property
    def precision(self) -> str:
        return "fp32 (onnxruntime)"

    def outputs(self, images: np.ndarray, batch_size: int = 64, tta: bool = False) -> Outputs:
        import torch

        if tta:
            raise ModelError(f"{self.card.path}: --tta is for torch checkpoints; an ONNX model runs one view")
        wanted = ["probabilities"] + (["scores"] if "scores" in self.outputs_named else [])
        probs, scores = [], []
        for start in range(0, len(images), batch_size):
            x = to_float(torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])), self.mean,
                         self.std)
            got = self.session.run(wanted, {"image": x.numpy()})
            probs.append(got[0])
            scores.append(got[-1])  # files exported before scores existed: the probabilities
        if not probs:
            empty = np.empty((0, len(self.classes)), dtype=np.float32)
            return Outputs(empty, empty)
        return Outputs(np.concatenate(probs), np.concatenate(scores))
