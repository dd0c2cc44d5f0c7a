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


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.45, colormap: str = "jet",
            seen: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Blend a [0, 1] heat map over `image` with a matplotlib colormap; outside `seen` (left, top, right,
    bottom: the box the model saw) the image is greyed and hatched instead, as much as `alpha` asks."""
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
    out = base * (1 - weight) + coloured * weight
    if seen is not None:
        out = _unseen(out, base, seen, alpha)
    return Image.fromarray(out.round().astype(np.uint8))


def unseen_mask(height: int, width: int, seen: tuple[int, int, int, int]) -> np.ndarray:
    """True where the model saw nothing: outside the box `seen`."""
    left, top, right, bottom = seen
    mask = np.ones((height, width), dtype=bool)
    mask[top:bottom, left:right] = False
    return mask


def _unseen(picture: np.ndarray, base: np.ndarray, seen: tuple[int, int, int, int], strength: float) -> np.ndarray:
    """Grey and hatch what the model never saw, so that no colour there reads as "unimportant"."""
    h, w = picture.shape[:2]
    mask = unseen_mask(h, w, seen)
    if not mask.any() or strength <= 0:
        return picture
    grey = base.mean(axis=2, keepdims=True) * 0.55 + 100  # washed out
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = ((xx + yy) // max(2, min(h, w) // 60)) % 4 == 0  # diagonal hatching
    hatched = np.where(stripes[..., None], 70.0, grey)
    out = picture.copy()
    out[mask] = base[mask] * (1 - strength) + np.broadcast_to(hatched, base.shape)[mask] * strength
    return out


def panel(result: Explanation, alpha: float = 0.45, colormap: str = "jet") -> Image.Image:
    """Image | heat map | overlay side by side, each column labelled, a colour bar with its scale, and a caption
    in words; what the model never saw (outside its crop) is hatched in the heat map and the overlay."""
    w, h = result.image.size
    seen = result.box if result.box != (0, 0, 0, 0) else (0, 0, w, h)
    heat = np.asarray(_colormap(colormap)(result.heatmap)[..., :3] * 255, dtype=np.float32)
    heat_rgb = Image.fromarray(_unseen(heat, heat, seen, 1.0).round().astype(np.uint8))
    unit = max(14, min(w, h) // 22)
    font = ImageFont.load_default(size=unit)
    small = ImageFont.load_default(size=max(11, unit * 4 // 5))
    label_h, bar_w = int(unit * 1.8), int(unit * 4.5)
    width = 3 * w + bar_w
    predicted = f"Predicted {CLASS_NAMES[result.predicted].lower()} ({result.predicted}), p = {result.probability:.2f}."
    if result.target == result.predicted:
        why = f"Warm colours: the regions that raised the model's score for {result.target}."
    else:
        why = (f"Warm colours: the regions that raised the score for {CLASS_NAMES[result.target].lower()} "
               f"({result.target}, p = {result.target_probability:.2f}).")
    scale = ("Colours share one scale across the images explained together." if result.shared else
             "Colours are scaled to this image's own peak (1).")
    unseen = "" if seen == (0, 0, w, h) else " Hatched: outside the part the model saw; it never looked there."
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = [part for text in (predicted, why + " " + scale, unseen.strip() + " A research tool, not a diagnosis.")
             for part in _wrap(text.strip(), font, width - unit, measure)]
    line_h = int(unit * 1.45)
    canvas = Image.new("RGB", (width, h + label_h + len(lines) * line_h + unit), "white")
    draw = ImageDraw.Draw(canvas)
    method = METHOD_NAMES.get(result.method, result.method)
    for i, (img, label) in enumerate(((result.image, "image"), (heat_rgb, f"{method} heat map"),
                                      (overlay(result.image, result.heatmap, alpha, colormap, seen), "overlay"))):
        canvas.paste(img, (i * w, label_h))
        draw.text((i * w + unit // 2, unit // 3), label, fill="black", font=font)
    _colour_bar(canvas, draw, (3 * w + unit // 2, label_h), (unit, h), colormap, small, result.shared)
    for k, line in enumerate(lines):
        draw.text((unit // 2, h + label_h + unit // 3 + k * line_h), line, fill="black", font=font)
    return canvas


def _wrap(text: str, font: ImageFont.ImageFont, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """`text` in lines no wider than `width` pixels, broken between words."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _colour_bar(canvas: Image.Image, draw: ImageDraw.ImageDraw, at: tuple[int, int], size: tuple[int, int],
                colormap: str, font: ImageFont.ImageFont, shared: bool) -> None:
    """A vertical bar of the colormap, 1 at the top, with its ticks labelled."""
    width, height = size
    values = np.linspace(1, 0, height)[:, None].repeat(width, axis=1)
    bar = Image.fromarray((_colormap(colormap)(values)[..., :3] * 255).astype(np.uint8))
    canvas.paste(bar, at)
    x, y = at
    draw.rectangle((x, y, x + width - 1, y + height - 1), outline="black")
    for value in (1.0, 0.5, 0.0):
        ty = y + round((1 - value) * (height - 1))
        draw.line((x + width, ty, x + width + 4, ty), fill="black")
        draw.text((x + width + 6, max(y, min(ty - 6, y + height - 14))), f"{value:g}", fill="black", font=font)
    draw.text((x, y + height + 2), "shared" if shared else "own peak", fill="black", font=font)


def save_png(image: Image.Image, target: Path) -> Path:
    with fsio.atomic_path(Path(target), suffix=".png") as tmp:
        image.save(tmp, format="PNG")
    return Path(target)
