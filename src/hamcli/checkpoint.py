"""Self-describing checkpoints: weights plus the plain metadata needed to rebuild model and preprocessing.

Everything but tensors is plain Python data, so checkpoints load with `weights_only=True`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hamcli import __version__, fsio
from hamcli.classes import CLASS_CODES
from hamcli.errors import ModelError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelCard:
    """What predict, evaluate and gradcam need to rebuild a model and its preprocessing."""

    arch: str
    classes: tuple[str, ...]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data_fingerprint: str
    data_name: str
    path: Path

    @classmethod
    def from_checkpoint(cls, ckpt: dict, path: Path) -> ModelCard:
        return cls(ckpt["arch"], tuple(ckpt["classes"]), int(ckpt["input_size"]), tuple(ckpt["mean"]),
                   tuple(ckpt["std"]), ckpt["data"]["fingerprint"], ckpt["data"]["name"], path)


def save(path: Path, **fields: Any) -> None:
    import torch

    payload = {"format_version": FORMAT_VERSION, "hamcli_version": __version__,
               "classes": list(CLASS_CODES), **fields}
    with fsio.atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_torch_file(path: Path, what: str = "checkpoint") -> object:
    """`torch.load(weights_only=True)` on CPU, with errors that name the file."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: {what} not found") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        raise ModelError(f"{path}: not a readable {what} ({exc}); is the file complete?") from None


def load(path: Path) -> dict:
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "arch" not in ckpt:
        raise ModelError(f"{path}: not a hamcli checkpoint (no format_version/arch); "
                         "use `--weights` in `hamcli train` to start from a plain state dict")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this hamcli "
                         f"understands ({FORMAT_VERSION}); upgrade hamcli")
    if tuple(ckpt["classes"]) != CLASS_CODES:
        raise ModelError(f"{path}: its classes {ckpt['classes']} differ from hamcli's {list(CLASS_CODES)}")
    return ckpt


def build_from(ckpt: dict):  # noqa: ANN201 - returns an nn.Module in eval mode
    """The checkpoint's model, built on the meta device so no time goes on random initialisation."""
    import torch

    from hamcli.zoo import build_model

    with torch.device("meta"):
        model = build_model(ckpt["arch"], num_classes=len(ckpt["classes"]), pretrained=False)
    try:
        model.load_state_dict(ckpt["state_dict"], assign=True)
    except RuntimeError as exc:
        raise ModelError(f"checkpoint weights do not fit architecture {ckpt['arch']!r} ({str(exc)[:200]}); "
                         "the file is damaged or was edited") from None
    return model.eval()
