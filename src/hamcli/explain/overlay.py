"""Drawing an explanation: a heat map blended over the image, or a labelled three-column panel."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import hamcli.fsio as fsio
from hamcli.classes import CLASS_NAMES
from hamcli.errors import UsageError

if TYPE_CHECKING:
    from hamcli.explain.maps import Explanation

METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM"}


def _colormap(name: str):  # noqa: ANN202
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise UsageError(f"--colormap {name!r}: not a matplotlib colormap (try jet, inferno, viridis, turbo)"
                         ) from None


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> Image.Image:
    """Blend a [0, 1] heat map over `image` with a matplotlib colormap."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != (image.height, image.width):
        raise UsageError(f"heat map of shape {heat.shape} does not match the image ({image.height}, {image.width})")
    if not np.isfinite(heat).all() or heat.min() < 0 or heat.max() > 1:
        raise UsageError("heat map values must be finite and in [0, 1]; normalise it first")
    if not 0 <= alpha <= 1:
        raise UsageError(f"--alpha {alpha}: choose a value between 0 and 1")
    coloured = (_colormap(colormap)(heat)[..., :3] * 255).astype(np.float32)
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    weight = alpha * heat[..., None] ** 0.5  # let cold regions show the lesion through
    return Image.fromarray((base * (1 - weight) + coloured * weight).round().astype(np.uint8))


def panel(result: Explanation, alpha: float = 0.45, colormap: str = "jet") -> Image.Image:
    """Image | heat map | overlay side by side, each column labelled, with a caption in words."""
    w, h = result.image.size
    heat_rgb = Image.fromarray((_colormap(colormap)(result.heatmap)[..., :3] * 255).astype(np.uint8))
    unit = max(14, min(w, h) // 22)
    font = ImageFont.load_default(size=unit)
    label_h, caption_h = int(unit * 1.8), int(unit * 3.6)
    canvas = Image.new("RGB", (3 * w, h + label_h + caption_h), "white")
    draw = ImageDraw.Draw(canvas)
    method = METHOD_NAMES.get(result.method, result.method)
    for i, (img, label) in enumerate(((result.image, "image"), (heat_rgb, f"{method} heat map"),
                                      (overlay(result.image, result.heatmap, alpha, colormap), "overlay"))):
        canvas.paste(img, (i * w, label_h))
        draw.text((i * w + unit // 2, unit // 3), label, fill="black", font=font)
    predicted = f"Predicted {CLASS_NAMES[result.predicted].lower()} ({result.predicted}), p = {result.probability:.2f}."
    if result.target == result.predicted:
        why = f"Warm colours: the regions that raised the model's score for {result.target}."
    else:
        why = (f"Warm colours: the regions that raised the score for {CLASS_NAMES[result.target].lower()} "
               f"({result.target}, p = {result.target_probability:.2f}).")
    draw.text((unit // 2, h + label_h + unit // 3), predicted, fill="black", font=font)
    draw.text((unit // 2, h + label_h + int(unit * 1.6)), why + " A research tool, not a diagnosis.",
              fill="black", font=font)
    return canvas


def save_png(image: Image.Image, target: Path) -> Path:
    with fsio.atomic_path(Path(target), suffix=".png") as tmp:
        image.save(tmp, format="PNG")
    return Path(target)
