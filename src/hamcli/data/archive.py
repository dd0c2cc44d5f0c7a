"""Safe extraction of zip archives: no member may leave the target folder or be absurdly large."""

from __future__ import annotations

import shutil
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from hamcli.errors import DataError

MAX_MEMBER_BYTES = 512 * 1024 * 1024  # no single dermatoscopy image or CSV comes close
MAX_RATIO = 200  # uncompressed / compressed, beyond which a member is a zip bomb


def _safe_relative(name: str, archive: Path) -> PurePosixPath:
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
        raise DataError(f"{archive}: member {name!r} would be written outside the target folder; "
                        "the archive is unsafe, refusing to extract it")
    return rel


def extract_zip(archive: Path, target: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """Extract `archive` into `target` (optionally only members ending in `suffixes`)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive}: not a readable zip archive ({exc}); download it again") from None
    written = []
    with zf:
        for info in zf.infolist():
            rel = _safe_relative(info.filename, archive)
            if info.is_dir() or rel.name.startswith(".") or "__MACOSX" in rel.parts:
                continue
            if suffixes and not rel.name.lower().endswith(suffixes):
                continue
            if info.file_size > MAX_MEMBER_BYTES or (
                info.compress_size and info.file_size / info.compress_size > MAX_RATIO
                and info.file_size > 10 * 1024 * 1024
            ):
                raise DataError(f"{archive}: member {info.filename!r} unpacks to {info.file_size:,} bytes, "
                                "far too large for this dataset; refusing to extract it")
            dest = target.joinpath(*rel.parts)
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except RuntimeError as exc:  # an encrypted member
                raise DataError(f"{archive}: member {info.filename!r} cannot be read ({exc}); hamcli reads plain "
                                "zip archives only: unpack it yourself and import the folder") from None
            except NotImplementedError as exc:  # a compression method zipfile does not know
                raise DataError(f"{archive}: member {info.filename!r} uses an unsupported compression ({exc}); "
                                "unpack it yourself and import the folder") from None
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:  # bad CRC, truncated data
                raise DataError(f"{archive}: member {info.filename!r} is damaged ({exc}); download the archive "
                                "again") from None
            except (IsADirectoryError, NotADirectoryError, FileExistsError):
                raise DataError(f"{archive}: member {info.filename!r} clashes with another member of the same "
                                "name (a file and a folder); the archive is malformed") from None
            written.append(dest)
    return written
