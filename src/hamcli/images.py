"""Reading images safely, and the one resize policy every command shares.

Policy: the centre square of the frame (side = the shorter side) is resized to S x S.
HAM10000 frames are 4:3 with the lesion centred, so the crop keeps the lesion and avoids
the distortion of squashing the whole frame. JPEG draft mode decodes at 1/2, 1/4 or 1/8
scale when S allows it, which is most of the speed of `hamcli prepare`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hamcli.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Pillow's own bomb limit (about 89 Mpx) is far beyond any dermatoscope frame; keep it explicit.
MAX_PIXELS = 90_000_000


class ImageReadError(DataError):
    """One image could not be used."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: scale the value range to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def open_rgb(source: str | Path | Image.Image, draft_size: int | None = None) -> Image.Image:
    """Open an image as upright 8-bit RGB; raise ImageReadError naming the file and the reason."""
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source))
    path = Path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageReadError(
                        f"{path}: {img.width}x{img.height} pixels is too large to be a dermatoscopy image "
                        f"(limit {MAX_PIXELS:,}); resize it first"
                    )
                if draft_size and img.format == "JPEG":
                    img.draft("RGB", (draft_size, draft_size))
                img.load()
                return _to_rgb(ImageOps.exif_transpose(img))
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{path}: refused as a decompression bomb (too many pixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: unreadable or truncated image ({exc})") from None


def square(img: Image.Image, size: int) -> np.ndarray:
    """Centre square of `img`, resized to size x size, as a uint8 HWC array."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    out = img.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side),
                     reducing_gap=3.0)
    return np.array(out, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays


def load_square(source: str | Path | Image.Image, size: int) -> np.ndarray:
    """The one preprocessing step shared by prepare, train, evaluate, predict and gradcam."""
    return square(open_rgb(source, draft_size=size), size)


def decode_all(items: Sequence[str | Path | Image.Image], size: int, out: np.ndarray, workers: int = 0,
               progress: Callable[[int, int], None] | None = None) -> dict[int, str]:
    """`load_square` every item into `out[i]`; return {index: reason} for the unusable ones.

    Threads, not processes: Pillow releases the GIL while decoding and resizing.
    """
    failures: dict[int, str] = {}

    def work(i: int) -> None:
        try:
            out[i] = load_square(items[i], size)
        except ImageReadError as exc:
            failures[i] = str(exc)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for done, _ in enumerate(pool.map(work, range(len(items))), 1):
            if progress and (done % 64 == 0 or done == len(items)):
                progress(done, len(items))
    return failures
