"""Atomic writes: a file or folder appears whole under its final name, or not at all."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hamcli.errors import DiskFullError, UsageError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path, directory: bool = False) -> None:
    """Push `path` (a file, or a folder's entries) to the disk, so a power cut after a rename cannot leave an
    empty or half-written file under the final name."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return  # a folder that cannot be opened (Windows): the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # a file system without fsync (some network mounts)
    finally:
        os.close(fd)


def free_bytes(path: Path) -> int:
    """Free space on the device that holds `path` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def disk_full(target: Path, needed: int | None = None) -> DiskFullError:
    """The error for a write to `target` that ran out of space."""
    free = free_bytes(target) / 1e6
    need = f", about {needed / 1e6:.0f} MB needed" if needed else ""
    return DiskFullError(f"{target}: no space left on the device ({free:.0f} MB free{need}); free some space or "
                         "set HAMCLI_HOME to a larger disk, and run the command again (nothing half-written was "
                         "kept)")


LOW_SPACE = 1 << 20  # less than this left: a failed write was the disk filling up


def is_disk_full(exc: BaseException, target: Path | None = None) -> bool:
    """An OSError for a full disk; or a RuntimeError from torch's writer (which does not say why, e.g. `file write
    failed` or `unexpected pos`) while the device holding `target` has next to no space left."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not isinstance(exc, RuntimeError):
        return False
    return "No space left" in str(exc) or (target is not None and free_bytes(target) < LOW_SPACE)


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is synced to disk and renamed over `target`.
    A full disk is one DiskFullError naming `target`; the temporary file is removed either way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
            _fsync(tmp_path)
        except (OSError, RuntimeError) as exc:
            tmp_path.unlink(missing_ok=True)  # first: the space it holds is part of what is missing
            if is_disk_full(exc, target.parent):
                raise disk_full(target) from None
            raise
        os.replace(tmp_path, target)
        _fsync(target.parent, directory=True)
    finally:
        tmp_path.unlink(missing_ok=True)


def regular_file(path: Path, what: str, max_bytes: int | None = None) -> Path:
    """`path`, checked before it is opened: it exists, it is a regular file (a FIFO would block the reader for
    ever, a device never end) and, where the content is parsed whole, not larger than `max_bytes`."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UsageError(f"{path}: {what} not found; check the path") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{path}: a folder, not a {what} file")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path}: not a regular file (a pipe, socket or device); give the {what} as a file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise UsageError(f"{path}: {info.st_size / 1e6:.1f} MB, more than a {what} can be "
                         f"({max_bytes / 1e6:g} MB); is it the right file?")
    return path


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `target` (old one removed last)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        try:
            yield tmp
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(target) from None
            raise
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
