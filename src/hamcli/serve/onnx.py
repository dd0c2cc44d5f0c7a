"""`hamcli export`: a model as ONNX, checked against the torch model on real images before it is written.

The graph takes normalised (N, 3, H, W) float images, with a dynamic batch size, and returns the
probabilities after the checkpoint's temperature and prior shift (and `scores`, without the decision
offsets, for ranking metrics); before it is written, it must give the probabilities `hamcli predict` gives
within 1e-5 on every check image. Its metadata holds the classes, the
whole input recipe, the architecture and the hamcli version: everything `hamcli predict --model
model.onnx` (or any onnxruntime user) needs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

import hamcli.fsio as fsio
from hamcli._version import __version__
from hamcli.errors import HamcliError, ModelError, UsageError

MAX_DIFF = 1e-5  # onnxruntime and torch, both fp32: the same probabilities to float rounding
OPSET = 17


@contextlib.contextmanager
def _quiet_stdout():  # noqa: ANN202
    """Nothing printed for a while: sys.stdout, and file descriptor 1, where C++ code prints."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _check_images(predictor, folder: Path | None) -> np.ndarray:  # noqa: ANN001
    """Real images to compare the two runtimes on: a folder given, the run's test split, or the samples."""
    from hamcli.data.importers import SAMPLES_DIR, index_images
    from hamcli.evaluation.scoring import held_out

    if folder is None:
        try:
            return held_out(predictor).images[:64]
        except HamcliError:  # no test split here (the bundled model, a moved run): the samples
            folder = SAMPLES_DIR
    files = sorted(index_images(Path(folder)).values())[:64]
    images, _, _ = predictor.decode(files)
    if not len(images):
        raise UsageError(f"--check-images {folder}: no readable image to check the export on")
    return images


def export_onnx(ref: str | None, output: Path, check_images: Path | None = None) -> dict:
    import onnx
    import onnxruntime as ort
    import torch

    from hamcli.data.preprocess import to_float
    from hamcli.inference.ensemble import Ensemble
    from hamcli.inference.load import load_model
    from hamcli.inference.postprocess import Postprocess

    predictor = load_model(ref, device="cpu")
    if predictor.model is None:
        raise UsageError(f"{predictor.card.path}: already an ONNX model")
    members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
    outer = predictor.post if isinstance(predictor, Ensemble) else None
    raw = isinstance(predictor, Ensemble) and predictor.members_raw  # the members' own postprocessing left out

    class WithPostprocess(torch.nn.Module):
        """What `predictor.outputs` gives: each member's probabilities after its own postprocess, averaged, then
        an ensemble's; and the ranking scores, without the offsets."""

        def __init__(self) -> None:
            super().__init__()
            self.models = torch.nn.ModuleList(m.model.float().eval() for m in members)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = [model(image) for model in self.models]
            posts = [Postprocess() if raw else m.post for m in members]
            probs = [post.apply(z).softmax(1) for post, z in zip(posts, logits, strict=True)]
            scores = [post.scores(z).softmax(1) for post, z in zip(posts, logits, strict=True)]
            if outer is None:
                return probs[0], scores[0]
            mean, score = torch.stack(probs).mean(0), torch.stack(scores).mean(0)
            if outer.identity:
                return mean, score
            return (outer.apply(mean.clamp_min(1e-12).log()).softmax(1),
                    outer.scores(score.clamp_min(1e-12).log()).softmax(1))

    h, w = predictor.input_size
    images = _check_images(predictor, check_images)
    want = predictor.outputs(images)  # the numbers predict gives, through the very same path
    x = to_float(torch.from_numpy(np.ascontiguousarray(images)), predictor.mean, predictor.std)
    with fsio.atomic_path(Path(output), suffix=".onnx") as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer notes that padding sizes and the postprocess constants are frozen into the graph:
            # they are, by design (the input size is fixed; only the batch is dynamic).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: kept, as it traces Lite
            try:
                with _quiet_stdout():  # on failure the exporter prints its whole graph from C++
                    torch.onnx.export(WithPostprocess().eval(), (torch.zeros(1, 3, h, w),), str(tmp),
                                      input_names=["image"], output_names=["probabilities", "scores"],
                                      dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"},
                                                    "scores": {0: "batch"}},
                                      opset_version=OPSET, dynamo=False)
            except Exception as exc:  # noqa: BLE001 - the exporter raises many types; the user needs the one line
                reason = " ".join(str(exc).replace(str(tmp), str(output)).split())
                reason = reason.split(" Please feel free")[0].split(" Torch IR graph")[0][:300]
                raise ModelError(f"{output}: the ONNX export failed ({type(exc).__name__}: {reason}); nothing was "
                                 "written") from None
        graph = onnx.load(str(tmp))
        meta = {"hamcli_version": __version__, "arch": predictor.card.arch,
                "classes": json.dumps(list(predictor.classes)),
                "preprocess": json.dumps(predictor.preprocess.as_dict()),
                "input": "image: float32 (N, 3, H, W), RGB scaled to [0, 1] then (x - mean) / std",
                "output": "probabilities: float32 (N, classes), after the model's temperature and prior shift"
                          + (f" (the average of {len(members)} models, then its operating point)" if outer else "")
                          + "; scores: the same before the prior shift and operating point, for ranking metrics",
                "source": str(predictor.card.path),
                # Which images the model learnt from or was selected on: evaluate --data leaves them out, predict
                # marks them `seen`, as for the checkpoint.
                "data": json.dumps({k: v for k, v in predictor.ckpt_meta.get("data", {}).items()
                                    if k in ("name", "fingerprint", "train_counts", "seen_image_ids")})}
        for key, value in meta.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(["probabilities", "scores"], {"image": x.numpy()})
        diff = max(float(np.abs(got[0] - want.probabilities).max()), float(np.abs(got[1] - want.scores).max()))
        if diff > MAX_DIFF or (got[0].argmax(1) != want.probabilities.argmax(1)).any():
            raise ModelError(f"the ONNX export disagrees with the torch model on {len(x)} images (largest "
                             f"probability difference {diff:.1e}, limit {MAX_DIFF:.0e}); nothing was written to "
                             f"{output}")
    return {"path": str(output), "bytes": Path(output).stat().st_size, "images": len(x), "max_abs_diff": diff}
