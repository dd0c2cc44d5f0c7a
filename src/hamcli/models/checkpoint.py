"""Self-describing checkpoints: weights plus the plain metadata needed to rebuild model and preprocessing.

Everything but tensors is plain Python data, so checkpoints load with `weights_only=True`. Format 2
records the whole input recipe (`preprocess`: size, crop policy, interpolation, mean/std) and today's
layer names; format-1 files (hamcli 0.1) are upgraded as they load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hamcli.fsio as fsio
from hamcli._version import __version__
from hamcli.classes import CLASS_CODES
from hamcli.data.preprocess import Preprocess
from hamcli.errors import HamcliError, ModelError
from hamcli.models.weights import read_torch_file
from hamcli.models.zoo import MODELS

FORMAT_VERSION = 2
MAX_MEMBERS = 32  # a one-file ensemble larger than this is refused before anything is built
MAX_WEIGHT = 1e6  # no trained weight or batch-norm statistic comes near it


@dataclass(frozen=True)
class CheckpointInfo:
    """What predict, evaluate and gradcam need to rebuild a model and feed it."""

    arch: str
    classes: tuple[str, ...]
    preprocess: Preprocess
    data_fingerprint: str
    data_name: str
    path: Path

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.size

    @property
    def mean(self) -> tuple[float, ...]:
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.preprocess.std

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: Path) -> CheckpointInfo:
        data = ckpt.get("data") if isinstance(ckpt.get("data"), dict) else {}
        return cls(ckpt["arch"], tuple(ckpt["classes"]), Preprocess.from_dict(ckpt["preprocess"], path),
                   str(data.get("fingerprint", "")), str(data.get("name", "")), Path(path))


def save(path: Path, preprocess: Preprocess, **fields: Any) -> None:
    import torch

    payload = {"format_version": FORMAT_VERSION, "hamcli_version": __version__,
               "classes": list(CLASS_CODES), "preprocess": preprocess.as_dict(), **fields}
    with fsio.atomic_path(path) as tmp:
        torch.save(payload, tmp)


def update(path: Path, **fields: Any) -> None:
    """Add or replace plain fields of a saved checkpoint, atomically."""
    import torch

    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict):
        raise ModelError(f"{path}: not a hamcli checkpoint")
    with fsio.atomic_path(path) as tmp:
        torch.save({**ckpt, **fields}, tmp)


def _upgrade(ckpt: dict, path: Path) -> dict:
    """A format-1 checkpoint in today's terms: a `preprocess` record and today's layer names."""
    from hamcli.models.small import upgrade_legacy_keys

    try:
        preprocess = {"size": ckpt["input_size"], "mean": ckpt["mean"], "std": ckpt["std"]}
    except KeyError as exc:
        raise ModelError(f"{path}: checkpoint has no {exc.args[0]!r}; the file is damaged or was edited") from None
    return {**ckpt, "preprocess": preprocess, "state_dict": upgrade_legacy_keys(ckpt["arch"], ckpt["state_dict"])}


def load(path: Path) -> dict:
    """Read and check a checkpoint; every field is validated before anything is built from it."""
    path = Path(path)
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "arch" not in ckpt:
        raise ModelError(f"{path}: not a hamcli checkpoint (no format_version/arch); "
                         "use `hamcli train --weights FILE` to start from a plain state dict")
    version = ckpt["format_version"]
    if not isinstance(version, int) or version < 1:
        raise ModelError(f"{path}: format_version {version!r} is not a positive number; the file is damaged")
    if version > FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format {version} is newer than this hamcli understands "
                         f"({FORMAT_VERSION}); upgrade hamcli")
    if ckpt["arch"] not in MODELS:
        raise ModelError(f"{path}: architecture {ckpt['arch']!r} is not in this hamcli's zoo; upgrade hamcli")
    members = ckpt.get("members")
    if members is not None:  # an ensemble in one file: each member carries its own weights
        if not isinstance(members, list) or not members or \
                not all(isinstance(m, dict) and isinstance(m.get("state_dict"), dict) for m in members):
            raise ModelError(f"{path}: its ensemble members are malformed; the file is damaged")
        if len(members) > MAX_MEMBERS:
            raise ModelError(f"{path}: an ensemble of {len(members)} members, more than hamcli loads "
                             f"({MAX_MEMBERS}); the file is damaged or not meant for hamcli")
        for i, member in enumerate(members):
            _check_member(member, i, path)
    elif not isinstance(ckpt.get("state_dict"), dict):
        raise ModelError(f"{path}: checkpoint has no weights (state_dict); the file is damaged")
    for key in ("bundle", "config", "data", "postprocess", "calibration", "metrics", "precision"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], dict):
            raise ModelError(f"{path}: its {key!r} record is a {type(ckpt[key]).__name__}, not a table; the file is "
                             "damaged or edited")
    if not isinstance(ckpt.get("classes"), (list, tuple)) or tuple(ckpt["classes"]) != CLASS_CODES:
        raise ModelError(f"{path}: its classes {ckpt.get('classes')} differ from hamcli's {list(CLASS_CODES)}")
    if version == 1:
        ckpt = _upgrade(ckpt, path)
    CheckpointInfo.from_checkpoint(ckpt, path)  # validates the preprocessing record
    return ckpt


def _check_member(member: dict, index: int, path: Path) -> None:
    """A one-file ensemble's member may override the shared fields: each override is checked as the top's."""
    from hamcli.slots import check_name

    where = f"{path}: member {index + 1}"
    if "classes" in member and tuple(member["classes"] if isinstance(member["classes"], list) else ()) != CLASS_CODES:
        raise ModelError(f"{where} has classes {member['classes']!r}, not hamcli's {list(CLASS_CODES)}; its "
                         "probabilities would be read as the wrong classes")
    if "arch" in member and member["arch"] not in MODELS:
        raise ModelError(f"{where}: architecture {member['arch']!r} is not in this hamcli's zoo")
    if "preprocess" in member:
        Preprocess.from_dict(member["preprocess"], where)
    name = member.get("member")
    if name is not None:
        try:
            check_name(str(name))
        except HamcliError:
            raise ModelError(f"{where} is named {str(name)[:60]!r}, not a plain name (letters, digits, - _ .); "
                             "the file is damaged or edited") from None


def build_from(ckpt: dict, path: Path | str = "checkpoint"):  # noqa: ANN201 - an nn.Module in eval mode
    """The checkpoint's model, built on the meta device so no time goes on random initialisation."""
    import torch

    from hamcli.models.build import build_model

    with torch.device("meta"):
        model, _ = build_model(ckpt["arch"], num_classes=len(ckpt["classes"]))
    state = ckpt["state_dict"]
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor) or
           (v.is_floating_point() and v.dtype not in (torch.float32, torch.float16, torch.bfloat16))]
    if bad:
        raise ModelError(f"{path}: tensor {bad[0]!r} is not a float32/float16 tensor; the file is damaged or edited")
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise ModelError(f"{path}: its weights do not fit architecture {ckpt['arch']!r} ({str(exc)[:200]}); "
                         "the file is damaged or was edited") from None
    model = model.float()  # fp16-stored weights compute in fp32
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelError(f"{path}: tensor {name!r} holds NaN or infinite values; the file is damaged")
        if tensor.is_floating_point() and tensor.numel() and float(tensor.abs().max()) > MAX_WEIGHT:
            raise ModelError(f"{path}: tensor {name!r} holds {float(tensor.abs().max()):.1e}, beyond any trained "
                             f"weight (limit {MAX_WEIGHT:.0e}); the file is damaged or edited")
    return model.eval()
