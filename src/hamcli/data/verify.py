"""Trusting a downloaded file: its md5 where the source table has one, else its structure; and a record
that makes "already present" a cheap check (size and modification time against what was verified).

An HTML error page or a body cut short must never become "the file": a zip is tested member by member
(CRC), a CSV must parse, an npz must open, and anything that starts like a web page is refused.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from hamcli.data.sources import RemoteFile

RECORD = "verified.json"
CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def structure_problem(path: Path, suffix: str | None = None) -> str | None:
    """Why `path` is not a whole file of its kind (`suffix`, default the file's own), or None."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "the file is empty"
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return "it is a web page, not the file (an error or login page from the server?)"
    suffix = (suffix or path.suffix).lower()
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
            return f"not a complete zip archive ({exc}); was the download cut short?"
        return f"damaged zip: member {bad!r} fails its CRC check" if bad else None
    if suffix == ".csv":
        import pandas as pd

        try:
            table = pd.read_csv(path, nrows=5)
        except Exception as exc:  # noqa: BLE001 - pandas raises many types for a broken CSV
            return f"not a readable CSV ({str(exc)[:100]})"
        return None if len(table.columns) > 1 else "a CSV with a single column: not the metadata expected"
    if suffix == ".npz":
        import numpy as np

        try:
            with np.load(path) as data:
                list(data.keys())
        except Exception as exc:  # noqa: BLE001
            return f"not a readable npz archive ({str(exc)[:100]})"
    return None


def problem(remote: RemoteFile, path: Path) -> str | None:
    """Why `path` cannot be trusted as `remote`, or None: the md5 where known, and always the structure."""
    if remote.md5:
        actual = md5sum(path)
        if actual != remote.md5:
            return f"checksum mismatch (expected md5 {remote.md5}, got {actual})"
    return structure_problem(path, Path(remote.name).suffix)


def _records(folder: Path) -> dict:
    try:
        return json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def record(remote: RemoteFile, path: Path) -> None:
    """Note that `path` was verified as `remote`, with what a later cheap check compares."""
    import hamcli.fsio as fsio

    stat = path.stat()
    records = _records(path.parent)
    records[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": remote.md5}
    fsio.write_json(path.parent / RECORD, records)


def is_verified(remote: RemoteFile, path: Path) -> bool:
    """Whether `path` is a trusted copy of `remote`: cheaply if it was verified and has not changed since,
    else by verifying it now."""
    if not path.is_file():
        return False
    stat = path.stat()
    seen = _records(path.parent).get(path.name)
    if seen == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": remote.md5}:
        return True
    if problem(remote, path):
        return False
    record(remote, path)
    return True
