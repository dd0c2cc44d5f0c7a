"""Grad-CAM for trained models: heat maps at the original image's resolution.

    >>> import hamcli
    >>> from hamcli.explain.maps import explain
    >>> from hamcli.explain.overlay import overlay
    >>> result = explain(hamcli.load_model(), "lesion.jpg")     # result.heatmap: (H, W) in [0, 1]
    >>> overlay(result.image, result.heatmap).save("cam.png")

The model sees the policy's crop of the image (the shared preprocessing: the centre square, or the whole
4:3 frame for a 4:3 model); the map covers that box and is zero outside it, where the model saw nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from hamcli.classes import CLASS_CODES, CLASS_INDEX
from hamcli.data.preprocess import crop_box, load, open_rgb, to_float
from hamcli.errors import UsageError
from hamcli.inference.predictor import Predictor
from hamcli.models.zoo import get_spec

if TYPE_CHECKING:
    import torch

MIN_MAP_SIDE = 3  # a 2x2 (or 1x1) map says almost nothing about where the model looked


@dataclass
class Explanation:
    source: str
    image: Image.Image  # the original, upright, RGB
    heatmap: np.ndarray  # (H, W) float32 in [0, 1], same size as image: `raw` over `scale`
    target: str  # the class explained
    predicted: str
    probability: float  # of the predicted class
    target_probability: float
    method: str
    layer: str
    map_size: tuple[int, int]  # the explained layer's (height, width) for this input
    raw: np.ndarray | None = None  # (H, W) the map in the layer's own units, before normalising
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # (left, top, right, bottom): the part the model saw
    scale: float = 1.0  # what 1.0 on the heat map stands for in raw units
    shared: bool = False  # scaled with other images (`normalised`), not to its own peak

    def normalised(self, scale: float) -> Explanation:
        """The same explanation with its heat map on a scale shared with other images (1.0 = `scale`)."""
        from dataclasses import replace

        heat = np.clip(self.raw / scale, 0, 1).astype(np.float32) if scale > 0 else self.heatmap
        return replace(self, heatmap=heat, scale=scale, shared=True)

    @property
    def saw_everything(self) -> bool:
        return self.box == (0, 0, self.image.width, self.image.height)


class EmptyMapError(UsageError):
    """The map is zero everywhere: the class's score does not depend on the layer for this image."""


def _target_index(target: str, probs: np.ndarray) -> int:
    if target == "pred":  # the class predict reports: after the model's postprocessing
        return int(probs.argmax())
    if target not in CLASS_INDEX:
        raise UsageError(f"--class {target!r}: choose pred or one of {', '.join(CLASS_CODES)}")
    return CLASS_INDEX[target]


def feature_map_sizes(model: torch.nn.Module, size: tuple[int, int], names: tuple[str, ...]
                      ) -> dict[str, tuple[int, int]]:
    """The (h, w) of each named layer's output for one input of `size`, measured on the meta device."""
    import copy

    import torch

    meta = copy.deepcopy(model).to("meta")
    found: dict[str, tuple[int, int]] = {}
    handles = []
    for name in names:
        try:
            layer = meta.get_submodule(name)
        except AttributeError:
            continue
        handles.append(layer.register_forward_hook(
            lambda m, i, o, name=name: found.__setitem__(name, tuple(o.shape[-2:]))
            if isinstance(o, torch.Tensor) and o.dim() == 4 else None))
    try:
        with torch.no_grad():
            meta(torch.empty(1, 3, *size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return found


def default_layer(predictor: Predictor) -> tuple[str, tuple[int, int]]:
    """The deepest of the zoo's candidate layers whose map is larger than 2x2 at this model's input size."""
    candidates = get_spec(predictor.card.arch).cam_layers
    sizes = feature_map_sizes(predictor.model, predictor.input_size, candidates)
    for name in candidates:
        if name in sizes and min(sizes[name]) >= MIN_MAP_SIDE:
            return name, sizes[name]
    name = next((n for n in candidates if n in sizes), candidates[0])
    return name, sizes.get(name, (0, 0))


def explain(predictor: Predictor, item: str | Path | Image.Image, target: str = "pred", method: str = "gradcam",
            layer: str | None = None) -> Explanation:
    """Explain one image: which regions raised the score of `target` ('pred' or a class code).

    An ensemble is explained as it predicts: its map is the mean of its members' maps (each in [0, 1],
    weighted equally, as the average of their probabilities weights them) for the class the ensemble
    predicts, and the probabilities are the ensemble's.
    """
    import torch

    from hamcli.explain.methods import get_method

    cam_cls = get_method(method)
    if target != "pred" and target not in CLASS_INDEX:
        raise UsageError(f"--class {target!r}: choose pred or one of {', '.join(CLASS_CODES)}")
    members = list(getattr(predictor, "members", None) or [predictor])
    if any(m.model is None for m in members):
        raise UsageError(f"{predictor.card.path}: Grad-CAM needs the model's layers and gradients, which an ONNX "
                         "file does not keep; explain the run or checkpoint it was exported from")
    layers = [layer or default_layer(m)[0] for m in members]  # members may be of different architectures
    map_size = feature_map_sizes(members[0].model, members[0].input_size, (layers[0],)).get(layers[0], (0, 0))
    if 0 < min(map_size) < 2:
        candidates = get_spec(members[0].card.arch).cam_layers
        sizes = feature_map_sizes(members[0].model, members[0].input_size, candidates)
        better = next((n for n in candidates if n in sizes and min(sizes[n]) >= MIN_MAP_SIDE), None)
        raise UsageError(f"--layer {layers[0]}: its map is {map_size[0]}x{map_size[1]} at this model's input size, "
                         "one value that cannot show where the model looked; choose a layer with a larger map "
                         f"(`hamcli gradcam --list-layers` shows their sizes){', e.g. ' + better if better else ''}")
    original = open_rgb(item)  # full resolution, for the overlay
    # The model input is cut and resized through `load`, exactly as predict does, and the
    # probabilities come from the path predict takes, so they are the ones predict reports.
    pixels = load(item, predictor.input_size)
    probs = predictor.probabilities(pixels[None])[0]
    index = _target_index(target, probs)
    chosen = torch.tensor([index])
    raw = np.mean([_member_map(m, cam_cls(m.model, name), pixels, original, chosen)
                   for m, name in zip(members, layers, strict=True)], axis=0, dtype=np.float32)
    peak = float(raw.max())
    label = str(item) if not isinstance(item, Image.Image) else "<image>"
    if not peak > 0:  # zero everywhere (or not a number)
        raise EmptyMapError(f"{label}: the {method} map at layer {' + '.join(dict.fromkeys(layers))} is zero "
                            f"everywhere: the model's score for {CLASS_CODES[index]} does not depend on that layer "
                            "here. Try --method layercam, or another --layer (`hamcli gradcam --list-layers`)")
    predicted = int(probs.argmax())
    box = crop_box(original.width, original.height, predictor.input_size)
    return Explanation(label, original, raw / peak, CLASS_CODES[index], CLASS_CODES[predicted],
                       float(probs[predicted]), float(probs[index]), method, " + ".join(dict.fromkeys(layers)),
                       map_size, raw, box, peak)


def _member_map(predictor: Predictor, cam, pixels: np.ndarray, original: Image.Image,  # noqa: ANN001
                chosen: torch.Tensor) -> np.ndarray:
    """One network's map over the original image in the layer's own units (zero outside the box the model saw),
    upsampled bicubically as pytorch-grad-cam does, so a 5x5 map reads as a smooth field, not as tiles."""
    import torch
    import torch.nn.functional as F

    x = to_float(torch.from_numpy(pixels)[None], predictor.mean, predictor.std).to(predictor.prec.device)
    maps, _ = cam(x, chosen.to(x.device))
    w, h = original.size
    left, top, right, bottom = crop_box(w, h, predictor.input_size)
    box = F.interpolate(maps[None].float(), size=(bottom - top, right - left), mode="bicubic",
                        align_corners=False)[0, 0]
    full = np.zeros((h, w), dtype=np.float32)
    full[top:bottom, left:right] = box.clamp_min(0).cpu().numpy()  # bicubic overshoots below 0 at edges
    return full


def heatmap(predictor: Predictor, item: str | Path | Image.Image, **kwargs) -> np.ndarray:
    """Just the (H, W) heat map in [0, 1]."""
    return explain(predictor, item, **kwargs).heatmap


def list_layers(predictor: Predictor, depth: int = 2) -> list[tuple[str, tuple[int, ...]]]:
    """Layers (up to `depth` dots deep) whose output is a feature map, with its shape for one image."""
    import torch

    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in predictor.model.named_modules():
        if name and name.count(".") < depth:
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
                if isinstance(o, torch.Tensor) and o.dim() == 4 else None))
    try:
        with torch.inference_mode():
            predictor.model(torch.zeros(1, 3, *predictor.input_size, device=predictor.prec.device))
    finally:
        for handle in handles:
            handle.remove()
    return list(shapes.items())
