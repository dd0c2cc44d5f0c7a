"""A generator of hostile inputs: files a careless or malicious user could hand to hamcli.

Each maker writes one file (or folder) into `root` and returns its path; `CASES` lists them with the
command that consumes them. Every case must end in a one-line error (exit 1 or 2) or a correct result,
never a traceback. Kept small and fast: no case writes more than a few hundred kilobytes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

CODES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def _jpeg(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    arr = np.random.default_rng(seed).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def _meta(ids: list[str]) -> str:
    rows = [f"HAM_{i:04d},{image_id},{CODES[i % 7]}" for i, image_id in enumerate(ids)]
    return "lesion_id,image_id,dx\n" + "\n".join(rows) + "\n"


def _zip(root: Path, name: str, write: Callable[[zipfile.ZipFile], None]) -> Path:
    path = root / name
    with zipfile.ZipFile(path, "w") as zf:
        write(zf)
    return path


def zip_bad_crc(root: Path) -> Path:
    path = _zip(root, "badcrc.zip", lambda zf: (zf.writestr("HAM10000_metadata.csv", _meta(["ISIC_1"])),
                                               zf.writestr("ISIC_1.jpg", _jpeg())))
    data = bytearray(path.read_bytes())
    start = data.find(b"ISIC_1.jpg") + len("ISIC_1.jpg") + 40  # inside the stored image bytes
    data[start] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def zip_encrypted_member(root: Path) -> Path:
    path = _zip(root, "encrypted.zip", lambda zf: zf.writestr("ISIC_1.jpg", _jpeg()))
    data = bytearray(path.read_bytes())
    # set the "encrypted" flag bit in the local header and in the central directory entry
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(sig)
        data[at + offset] |= 0x01
    path.write_bytes(bytes(data))
    return path


def zip_unknown_compression(root: Path) -> Path:
    path = _zip(root, "method.zip", lambda zf: zf.writestr("ISIC_1.jpg", _jpeg()))
    data = bytearray(path.read_bytes())
    for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(sig)
        data[at + offset:at + offset + 2] = (99).to_bytes(2, "little")  # AES / unknown method
    path.write_bytes(bytes(data))
    return path


def zip_file_then_folder(root: Path) -> Path:
    def write(zf: zipfile.ZipFile) -> None:
        zf.writestr("HAM10000_metadata.csv", _meta(["ISIC_1"]))
        zf.writestr("images", b"a file")
        zf.writestr("images/ISIC_1.jpg", _jpeg())

    return _zip(root, "clash.zip", write)


def zip_truncated(root: Path) -> Path:
    path = _zip(root, "truncated.zip", lambda zf: zf.writestr("ISIC_1.jpg", _jpeg()))
    path.write_bytes(path.read_bytes()[:-30])
    return path


def npz_label_out_of_range(root: Path) -> Path:
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.zeros((2, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.array([[0], [9]])
    np.savez(root / "out_of_range.npz", **arrays)
    return root / "out_of_range.npz"


def npz_missing_array(root: Path) -> Path:
    np.savez(root / "missing.npz", train_images=np.zeros((2, 28, 28, 3), dtype=np.uint8))
    return root / "missing.npz"


def npz_object_array(root: Path) -> Path:
    arrays = {f"{s}_images": np.zeros((1, 28, 28, 3), dtype=np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": np.array([[{"x": 1}]], dtype=object) for s in ("train", "val", "test")})
    np.savez(root / "objects.npz", **arrays)
    return root / "objects.npz"


def hmnist_empty_cell(root: Path) -> Path:
    header = ",".join(f"pixel{i:04d}" for i in range(12)) + ",label"
    row = ",".join(["10"] * 11 + [""]) + ",2"
    (root / "hmnist_2_2_RGB.csv").write_text(header + "\n" + row + "\n")
    return root / "hmnist_2_2_RGB.csv"


def hmnist_label_out_of_range(root: Path) -> Path:
    header = ",".join(f"pixel{i:04d}" for i in range(12)) + ",label"
    (root / "hmnist_2_2_RGB.csv").write_text(header + "\n" + ",".join(["10"] * 12) + ",7\n")
    return root / "hmnist_2_2_RGB.csv"


def folder_with_markup_names(root: Path) -> Path:
    folder = root / "markup"
    (folder / "images").mkdir(parents=True)
    ids = ["ISIC_0000001", "x[bold]y", "ISIC_[red]2"]
    for i, image_id in enumerate(ids):
        (folder / "images" / f"{image_id}.jpg").write_bytes(_jpeg(i))
    (folder / "HAM10000_metadata.csv").write_text(_meta(ids))
    return folder


def image_with_markup_and_escapes(root: Path) -> Path:
    """The path reads `x[/y]...` (a folder `x[` and a file `y]...`): a closing tag rich would choke on."""
    path = root / "x[" / "y]\x1b[31mred.jpg"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(_jpeg())
    return path


def image_named_like_a_formula(root: Path) -> Path:
    path = root / "=HYPERLINK(1).jpg"
    path.write_bytes(_jpeg())
    return path


def fifo_named_jpg(root: Path) -> Path:
    import os

    path = root / "pipe.jpg"
    os.mkfifo(path)
    return path


def sixteen_bit_png(root: Path) -> Path:
    path = root / "deep.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(path)
    return path


IMPORT_CASES = [zip_bad_crc, zip_encrypted_member, zip_unknown_compression, zip_file_then_folder, zip_truncated,
                npz_label_out_of_range, npz_missing_array, npz_object_array, hmnist_empty_cell,
                hmnist_label_out_of_range]
