"""Knowledge distillation (`train --distil-from MODEL`): a student learns from a teacher's softened
probabilities as well as from the labels, the way an ensemble's accuracy is carried into one small network.

The teacher (a run, a family, an ensemble, a checkpoint) scores every training image once, un-augmented, at
the prepared size; flips and quarter turns do not change a lesion, so its answer stands for every augmented
view. Its raw probabilities (before any prior shift or operating point) are softened by the temperature T:
p ** (1 / T), renormalised, which is softmax(logits / T). Each step's loss is

    (1 - w) * cross-entropy(labels) + w * T^2 * KL(teacher's softened || student's softened)

(Hinton et al., 2015). A teacher that learnt from, or was selected on, any image of the test split would carry
it into training through its answers: refused. One that saw this run's validation rows (it chose its epoch on
them, say) is allowed, and the run says that its validation figures lean optimistic.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hamcli.data.cache import PreparedDataset
from hamcli.errors import UsageError


def soft_targets(teacher_ref: str, prepared: PreparedDataset, images: torch.Tensor, train_idx: np.ndarray,
                 val_idx: np.ndarray, temperature: float) -> tuple[torch.Tensor, str]:
    """(N, classes) softened teacher probabilities for the training rows (zeros elsewhere), and a line that says
    what the teacher is."""
    from hamcli.inference.load import load_model

    teacher = load_model(teacher_ref)
    option = f"--distil-from {teacher_ref}"
    if "onnx" in teacher.ckpt_meta:
        raise UsageError(f"{option}: an ONNX file gives calibrated probabilities only; distil from the run, family, "
                         "ensemble or checkpoint it was exported from")
    if tuple(teacher.input_size) != tuple(prepared.size):
        h, w = teacher.input_size
        raise UsageError(f"{option}: the teacher takes {w}x{h} images and {prepared.name!r} holds "
                         f"{prepared.size[1]}x{prepared.size[0]}; prepare the student's data at the teacher's size")
    seen = teacher.ckpt_meta.get("data", {}).get("seen_image_ids")
    if seen is None:
        raise UsageError(f"{option}: the model does not record which images it learnt from, so it cannot be "
                         "shown to have left this run's validation and test images alone")
    m = prepared.manifest
    ids = m["image_id"].to_numpy()
    seen = set(seen)
    tested = seen & set(ids[(m["split"] == "test").to_numpy()].tolist())
    if tested:
        raise UsageError(f"{option}: the teacher learnt from or was selected on {len(tested)} images of "
                         f"{prepared.name!r}'s test split; its answers would carry them into training. Distil from a "
                         "teacher that never saw the test split")
    validated = seen & set(ids[val_idx].tolist())
    probs = teacher.outputs(np.asarray(images[torch.from_numpy(train_idx)].cpu()), raw=True).probabilities
    soft = np.power(np.clip(probs.astype(np.float64), 1e-12, 1.0), 1.0 / temperature)
    soft /= soft.sum(1, keepdims=True)
    out = torch.zeros((len(images), soft.shape[1]), dtype=torch.float32)
    out[torch.from_numpy(train_idx)] = torch.from_numpy(soft.astype(np.float32))
    members = getattr(teacher, "members", None)
    what = f"{len(members)} models" if members else teacher.card.arch
    line = f"distilling from {teacher_ref} ({what}), T {temperature:g}"
    if validated:  # usual (a teacher chooses its epoch on the same rows), and worth saying
        line += (f"; the teacher learnt from or was selected on {len(validated)} of this run's {len(val_idx)} "
                 "validation rows, so this run's validation figures lean optimistic: judge it on the test split")
    return out, line


def distil_loss(out: torch.Tensor, soft: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(soft || softmax(out / T)), averaged over the batch."""
    return F.kl_div(F.log_softmax(out / temperature, dim=1), soft, reduction="batchmean") * temperature ** 2
