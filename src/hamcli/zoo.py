"""The model zoo: one registry of architectures by name, built by one factory.

Every entry records what travels with the model as data: its default input size, the
normalisation its weights expect, whether ImageNet weights exist, and the layer Grad-CAM
explains by default. torchvision models are built by torchvision with the head replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hamcli.errors import ModelError, UsageError

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    default_size: int
    cam_layer: str
    head: str  # dotted path of the final classifier layer (replaced for torchvision models)
    torchvision: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _lenet(num_classes: int) -> nn.Module:
    from torch import nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128)),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(128 * 16, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, num_classes),
    )


def _cnn(num_classes: int) -> nn.Module:
    from torch import nn

    def block(cin: int, cout: int, drop: float) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(drop),
        )

    return nn.Sequential(
        nn.Sequential(block(3, 32, 0.1), block(32, 64, 0.2), block(64, 128, 0.3), block(128, 256, 0.3)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4), nn.Linear(256, num_classes),
    )


SMALL: dict[str, Callable[[int], nn.Module]] = {"lenet": _lenet, "cnn": _cnn}

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("lenet", "3 conv + 3 max-pool layers, as the classic HAM10000 LeNet projects", 64,
              "0.7", head="6", torchvision=False),
    ModelSpec("cnn", "small conv / batch-norm / dropout network for 28-128 px images", 64,
              "0.3", head="4", torchvision=False),
    ModelSpec("resnet18", "torchvision ResNet-18", 224, "layer4", head="fc"),
    ModelSpec("resnet50", "torchvision ResNet-50", 224, "layer4", head="fc"),
    ModelSpec("mobilenet_v2", "torchvision MobileNetV2", 224, "features", head="classifier.1"),
    ModelSpec("mobilenet_v3_small", "torchvision MobileNetV3-Small", 224, "features", head="classifier.3"),
    ModelSpec("mobilenet_v3_large", "torchvision MobileNetV3-Large", 224, "features", head="classifier.3"),
    ModelSpec("efficientnet_b0", "torchvision EfficientNet-B0", 224, "features", head="classifier.1"),
    ModelSpec("densenet121", "torchvision DenseNet-121", 224, "features", head="classifier"),
    ModelSpec("convnext_tiny", "torchvision ConvNeXt-Tiny", 224, "features", head="classifier.2"),
)}


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UsageError(f"unknown architecture {name!r}; choose one of {', '.join(MODELS)} "
                         "(`hamcli models` lists them)") from None


def _weights_enum(spec: ModelSpec):  # noqa: ANN202
    from torchvision.models import get_model_weights

    return get_model_weights(spec.name).DEFAULT


def weights_file(spec: ModelSpec) -> Path | None:
    """Where torch's cache keeps this model's ImageNet weights (None for our own small models)."""
    if not spec.torchvision:
        return None
    from torch.hub import get_dir

    url = _weights_enum(spec).url
    return Path(get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _replace_head(model: nn.Module, path: str, num_classes: int) -> None:
    from torch import nn

    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = getattr(parent, leaf) if not leaf.isdigit() else parent[int(leaf)]
    new = nn.Linear(old.in_features, num_classes)
    if leaf.isdigit():
        parent[int(leaf)] = new
    else:
        setattr(parent, leaf, new)


def build_model(name: str, num_classes: int = 7, pretrained: bool = False,
                weights_path: Path | None = None) -> nn.Module:
    """Build architecture `name` with a `num_classes` head.

    pretrained: ImageNet weights through torchvision's weights API (downloaded once into torch's
    cache). weights_path: start from a local state dict (a torchvision or hamcli file) instead.
    """
    spec = get_spec(name)
    if not spec.torchvision:
        if pretrained:
            raise UsageError(f"{name} has no ImageNet weights; use --no-pretrained")
        model = SMALL[name](num_classes)
    else:
        from torchvision.models import get_model

        weights = _weights_enum(spec) if pretrained else None
        try:
            model = get_model(name, weights=weights)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            if not pretrained:
                raise
            target = weights_file(spec)
            raise ModelError(
                f"could not fetch ImageNet weights for {name} from {weights.url} ({exc}); "
                f"download that file by hand to {target}, or use --no-pretrained, "
                "or --weights PATH to start from a local state dict"
            ) from None
        _replace_head(model, spec.head, num_classes)
    if weights_path is not None:
        load_weights(model, Path(weights_path))
    return model


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a state dict (or a hamcli checkpoint) into `model`, skipping a head of another shape."""
    from hamcli.checkpoint import read_torch_file

    state = read_torch_file(path, what="weights file")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ModelError(f"{path}: none of its tensors fit this architecture; is it for another model?")
    model.load_state_dict(usable, strict=False)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
