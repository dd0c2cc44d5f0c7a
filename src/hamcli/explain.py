"""Grad-CAM for trained models: heat maps at the original image's resolution, overlays and panels.

    >>> import hamcli
    >>> from hamcli.explain import explain, overlay
    >>> result = explain(hamcli.load_model(), "lesion.jpg")     # result.heatmap: (H, W) in [0, 1]
    >>> overlay(result.image, result.heatmap).save("cam.png")

The model sees the centre square of the image (the shared preprocessing); the map covers that
square and is zero outside it, where the model saw nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hamcli import fsio
from hamcli.classes import CLASS_CODES, CLASS_INDEX, CLASS_NAMES
from hamcli.errors import UsageError
from hamcli.images import load_square, open_rgb
from hamcli.predict import Predictor


@dataclass
class Explanation:
    source: str
    image: Image.Image  # the original, upright, RGB
    heatmap: np.ndarray  # (H, W) float32 in [0, 1], same size as image
    target: str  # the class explained
    predicted: str
    probability: float  # of the predicted class
    target_probability: float
    method: str
    layer: str


def _target(target: str):  # noqa: ANN202 - a class index tensor or a callable on the logits
    import torch

    if target == "pred":
        return lambda logits: logits.argmax(1)
    if target not in CLASS_INDEX:
        raise UsageError(f"--class {target!r}: choose pred or one of {', '.join(CLASS_CODES)}")
    return torch.tensor([CLASS_INDEX[target]])


def explain(predictor: Predictor, item: str | Path | Image.Image, target: str = "pred", method: str = "gradcam",
            layer: str | None = None) -> Explanation:
    """Explain one image: which regions raised the score of `target` ('pred' or a class code)."""
    import torch
    import torch.nn.functional as F

    from hamcli.cam import get_method
    from hamcli.train.augment import to_float
    from hamcli.zoo import get_spec

    cam_cls = get_method(method)
    chosen = _target(target)
    layer = layer or get_spec(predictor.card.arch).cam_layer
    cam = cam_cls(predictor.model, layer)
    original = open_rgb(item)  # full resolution, for the overlay
    size = predictor.input_size
    # The model input is decoded again through load_square (JPEG draft mode), exactly as predict does,
    # so the explained probabilities are the ones predict reports.
    x = to_float(torch.from_numpy(load_square(item, size))[None], predictor.mean, predictor.std)
    x = x.to(predictor.prec.device)
    if isinstance(chosen, torch.Tensor):
        chosen = chosen.to(x.device)
    maps, probs_t = cam(x, chosen)  # one forward pass: prediction and explanation together
    probs = probs_t[0].float().cpu().numpy()
    index = int(probs.argmax()) if target == "pred" else CLASS_INDEX[target]
    w, h = original.size
    side = min(w, h)
    square = F.interpolate(maps[None].float(), size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    lo, hi = square.min(), square.max()
    square = (square - lo) / (hi - lo) if hi > lo else torch.zeros_like(square)  # [0, 1] after upsampling
    full = np.zeros((h, w), dtype=np.float32)
    top, left = (h - side) // 2, (w - side) // 2
    full[top:top + side, left:left + side] = square.clamp(0, 1).cpu().numpy()
    predicted = int(probs.argmax())
    return Explanation(str(item) if not isinstance(item, Image.Image) else "<image>", original, full,
                       CLASS_CODES[index], CLASS_CODES[predicted], float(probs[predicted]), float(probs[index]),
                       method, layer)


def heatmap(predictor: Predictor, item: str | Path | Image.Image, **kwargs) -> np.ndarray:
    """Just the (H, W) heat map in [0, 1]."""
    return explain(predictor, item, **kwargs).heatmap


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> Image.Image:
    """Blend a [0, 1] heat map over `image` with a matplotlib colormap."""
    import matplotlib

    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != (image.height, image.width):
        raise UsageError(f"heat map of shape {heat.shape} does not match the image ({image.height}, {image.width})")
    if not np.isfinite(heat).all() or heat.min() < 0 or heat.max() > 1:
        raise UsageError("heat map values must be finite and in [0, 1]; normalise it first")
    if not 0 <= alpha <= 1:
        raise UsageError(f"--alpha {alpha}: choose a value between 0 and 1")
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise UsageError(f"--colormap {colormap!r}: not a matplotlib colormap (try jet, inferno, viridis, turbo)"
                         ) from None
    coloured = (cmap(heat)[..., :3] * 255).astype(np.float32)
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    weight = alpha * heat[..., None] ** 0.5  # let cold regions show the lesion through
    return Image.fromarray((base * (1 - weight) + coloured * weight).round().astype(np.uint8))


def panel(result: Explanation, alpha: float = 0.45, colormap: str = "jet") -> Image.Image:
    """Original | heat map | overlay side by side, captioned with the class and its probability."""
    import matplotlib

    w, h = result.image.size
    heat_rgb = Image.fromarray((matplotlib.colormaps[colormap](result.heatmap)[..., :3] * 255).astype(np.uint8))
    caption_h = max(28, h // 12)
    canvas = Image.new("RGB", (3 * w, h + caption_h), "white")
    for i, img in enumerate((result.image, heat_rgb, overlay(result.image, result.heatmap, alpha, colormap))):
        canvas.paste(img, (i * w, caption_h))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(12, caption_h // 2))
    text = (f"predicted {result.predicted} ({CLASS_NAMES[result.predicted]}) p={result.probability:.2f}   |   "
            f"{result.method} for {result.target} (p={result.target_probability:.2f}) at {result.layer}")
    draw.text((8, caption_h // 5), text, fill="black", font=font)
    return canvas


def save_png(image: Image.Image, target: Path) -> Path:
    with fsio.atomic_path(Path(target), suffix=".png") as tmp:
        image.save(tmp, format="PNG")
    return Path(target)


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
        size = predictor.input_size
        with torch.inference_mode():
            predictor.model(torch.zeros(1, 3, size, size, device=predictor.prec.device))
    finally:
        for handle in handles:
            handle.remove()
    return list(shapes.items())
