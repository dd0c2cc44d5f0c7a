"""The one preprocessing every command shares: decode safely, crop, resize, normalise.

Policy ("center-crop"): the largest centred box of the target's aspect ratio is cut from the frame and
resized to W x H. For a square target that is the centre square (today's default, 128 px); for a 4:3
target such as 200x150 it is the whole 4:3 dermatoscopic frame, undistorted. HAM10000 frames are 4:3
with the lesion centred. Every image is decoded whole, by whatever route it comes (a path, a PIL image, an
upload): JPEG's faster reduced-scale (draft) decoding gives other pixels than a whole decode, so a PIL image
already decoded in memory would get another answer than its file (up to 0.1 in a probability).

A checkpoint records its `Preprocess` (size, policy, interpolation, mean/std), and prepare, train,
evaluate, predict and gradcam all go through `load` and `to_float`, so what a model sees cannot drift
between training and use.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hamcli.errors import DataError, ModelError, UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# The largest ISIC frames are about 30 Mpx; beyond 40 Mpx an image is refused before it is decoded,
# which bounds the memory one decoding thread can take (16-bit input included) to a few hundred MB.
MAX_PIXELS = 40_000_000


class ImageReadError(DataError):
    """One image could not be used; `kind` says why: missing, not-image, too-large or damaged."""

    def __init__(self, message: str, kind: str = "damaged") -> None:
        super().__init__(message)
        self.kind = kind


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit, 32-bit and float greyscale: stretch the value range to 8 bits instead of clipping, with
        # Pillow's own point transforms (no float64 copy of the image: 8 bytes a pixel would be gigabytes).
        lo, hi = img.getextrema()
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            return Image.new("RGB", img.size)
        wide = img.convert("I") if img.mode.startswith("I;16") else img  # point() maps I and F linearly
        scale = 255.0 / (hi - lo)
        return wide.point(lambda v: v * scale - lo * scale).convert("L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


@dataclass(frozen=True)
class Upload:
    """An encoded image held in memory (a web upload): decoded exactly as the same file on disk would be."""

    data: bytes
    label: str = "upload"
    _decoded: dict = field(default_factory=dict, compare=False, repr=False)  # the image, decoded once

    def __str__(self) -> str:
        return self.label

    def decode(self) -> Image.Image:
        """The image as `decode_bytes` gives it; checking an upload and predicting it decode it once."""
        if "image" not in self._decoded:
            self._decoded["image"] = decode_bytes(self.data, self.label)
        return self._decoded["image"].copy()


def open_rgb(source: str | Path | Image.Image | Upload) -> Image.Image:
    """Open an image as upright 8-bit RGB; raise ImageReadError naming the file and the reason."""
    if isinstance(source, Upload):
        return source.decode()
    if isinstance(source, Image.Image):
        filename = getattr(source, "filename", "")
        if not (filename and Path(filename).is_file()):
            return _to_rgb(ImageOps.exif_transpose(source))
        source = filename  # opened from a file by Image.open: read it as a path is read, for the same pixels
    path = Path(source)
    if path.exists() and not stat.S_ISREG(path.stat().st_mode) and not path.is_dir():
        raise ImageReadError(f"{path}: not a regular file (a pipe, socket or device); skipped", "not-image")
    return _decode(path, str(path))


def decode_bytes(data: bytes, label: str = "upload") -> Image.Image:
    """An image held in memory (an upload), decoded with the same checks as a file; nothing touches disk."""
    import io

    return _decode(io.BytesIO(data), label)


# The formats dermatoscopes and their software write. Pillow reads dozens more (DDS, BLP, ...) whose decoders see
# little use; a crafted file in one of them is refused here rather than parsed.
FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP", "GIF")  # JPEG opens multi-picture (MPO) files too


def _decode(source, label: str) -> Image.Image:  # noqa: ANN001 - a path or a file object
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=FORMATS) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageReadError(
                        f"{label}: {img.width}x{img.height} pixels is too large to be a dermatoscopy image "
                        f"(limit {MAX_PIXELS:,}); resize it first", "too-large")
                img.load()
                return _to_rgb(ImageOps.exif_transpose(img))
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{label}: file not found", "missing") from None
    except IsADirectoryError:
        raise ImageReadError(f"{label}: is a directory, not an image", "not-image") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{label}: not an image file hamcli reads (JPEG, PNG, TIFF, BMP, WebP or GIF)",
                             "not-image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(f"{label}: refused as a decompression bomb (too many pixels)", "too-large") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{label}: unreadable or truncated image ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file can make a decoder fail in any way; it is one bad input
        raise ImageReadError(f"{label}: damaged image ({type(exc).__name__} while decoding)") from None


POLICY = "center-crop"
INTERPOLATION = "bilinear"
MAX_SIDE = 1024  # the largest side a prepared cache or a checkpoint may ask for


def parse_size(text: str | int) -> tuple[int, int]:
    """`--size`: "128" (a square) or "200x150" (width x height); returns (height, width)."""
    raw = str(text).lower().strip()
    try:
        w, h = (int(v) for v in raw.split("x")) if "x" in raw else (int(raw), int(raw))
    except ValueError:
        raise UsageError(f"--size {text!r}: give one number (a square, e.g. 128) or WIDTHxHEIGHT "
                         "(e.g. 200x150 keeps the whole 4:3 dermatoscopic frame)") from None
    if not (8 <= w <= MAX_SIDE and 8 <= h <= MAX_SIDE):
        raise UsageError(f"--size {text!r}: each side must be between 8 and {MAX_SIDE} pixels")
    return h, w


def size_text(size: tuple[int, int]) -> str:
    h, w = size
    return str(w) if h == w else f"{w}x{h}"


@dataclass(frozen=True)
class Preprocess:
    """What a model expects of an image: (height, width), crop policy, interpolation and normalisation."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    policy: str = POLICY
    interpolation: str = INTERPOLATION

    @property
    def square(self) -> bool:
        return self.size[0] == self.size[1]

    def as_dict(self) -> dict:
        return {**asdict(self), "size": list(self.size), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict, where: object = "checkpoint") -> Preprocess:
        """Checked before anything is allocated: a damaged or hostile file gets a clear error, not an OOM."""
        try:
            size = data["size"]
            h, w = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
            mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
            policy, interp = str(data.get("policy", POLICY)), str(data.get("interpolation", INTERPOLATION))
        except (KeyError, TypeError, ValueError, IndexError):
            raise ModelError(f"{where}: its preprocessing record is incomplete or malformed; "
                             "the file is damaged or was edited") from None
        if not (8 <= h <= MAX_SIDE and 8 <= w <= MAX_SIDE):
            raise ModelError(f"{where}: input size {w}x{h} is outside 8..{MAX_SIDE} pixels; the file is damaged")
        if len(mean) != 3 or len(std) != 3 or not all(np.isfinite(mean + std)) or min(std) <= 0:
            raise ModelError(f"{where}: normalisation mean {mean} / std {std} is not three finite values with "
                             "std > 0; the file is damaged or was edited")
        if policy != POLICY or interp != INTERPOLATION:
            raise ModelError(f"{where}: preprocessing {policy}/{interp} is unknown to this hamcli; upgrade hamcli")
        return cls((h, w), mean, std, policy, interp)  # type: ignore[arg-type]


def crop_box(width: int, height: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred box of the target's aspect ratio: (left, top, right, bottom)."""
    th, tw = size
    if width * th > height * tw:  # the frame is wider than the target: cut the sides
        cw, ch = round(height * tw / th), height
    else:
        cw, ch = width, round(width * th / tw)
    left, top = (width - cw) // 2, (height - ch) // 2
    return left, top, left + cw, top + ch


def resize(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The policy's crop of `img`, resized to `size` (height, width), as a uint8 HWC array."""
    h, w = size
    out = img.resize((w, h), Image.BILINEAR, box=crop_box(img.width, img.height, size), reducing_gap=3.0)
    return np.array(out, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays


def load(source: str | Path | Image.Image | Upload, size: tuple[int, int]) -> np.ndarray:
    """Decode and resize one image: the one step shared by prepare, train, evaluate, predict and gradcam."""
    return resize(open_rgb(source), size)


def to_float(batch, mean, std):  # noqa: ANN001, ANN201 - torch tensors; torch is imported by the caller
    """(N, H, W, 3) uint8 -> normalised (N, 3, H, W) float32, the same for training and inference."""
    return normalise(batch.permute(0, 3, 1, 2).float().div_(255.0), mean, std)


def normalise(x, mean, std):  # noqa: ANN001, ANN201
    return (x - mean.to(x.device).view(1, 3, 1, 1)) / std.to(x.device).view(1, 3, 1, 1)


def decode_all(items: Sequence[str | Path | Image.Image | Upload], size: tuple[int, int], out: np.ndarray,
               workers: int = 0, progress: Callable[[int, int], None] | None = None) -> dict[int, str]:
    """`load` every item into `out[i]`; return {index: reason} for the unusable ones.

    Threads, not processes: Pillow releases the GIL while decoding and resizing.
    """
    failures: dict[int, str] = {}

    def work(i: int) -> None:
        try:
            out[i] = load(items[i], size)
        except ImageReadError as exc:
            failures[i] = str(exc)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for done, _ in enumerate(pool.map(work, range(len(items))), 1):
            if progress and (done % 64 == 0 or done == len(items)):
                progress(done, len(items))
    return failures
