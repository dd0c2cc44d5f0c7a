"""Fetching files over HTTP: streamed to a partial file, resumed with Range, retried, verified.

Standard library only (urllib): the one feature we need beyond it, resuming, is a header.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hamcli._version import __version__
from hamcli.data.sources import RemoteFile
from hamcli.errors import DownloadError

if TYPE_CHECKING:
    from hamcli.data.raw import Dataset

CHUNK = 1 << 20
Progress = Callable[[str, int, int | None], None]  # (file name, bytes done, total or None)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_s: float = 1.0  # doubled after each failed attempt
    timeout_s: float = 60.0


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _manual_hint(remote: RemoteFile, url: str, dest: Path) -> str:
    checksum = f" (md5 {remote.md5})" if remote.md5 else ""
    return f"download {url} by hand{checksum}, save it as {dest}, and run the command again"


def _stream_once(url: str, part: Path, policy: RetryPolicy, name: str, progress: Progress | None) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"hamcli/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=policy.timeout_s) as resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        if have and status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            mode, total = "ab", (have + int(length) if length else None)
        else:  # the server ignored Range (200): start over
            mode, have, total = "wb", 0, (int(length) if length else None)
        with open(part, mode) as fh:
            done = have
            if progress:
                progress(name, done, total)
            while block := resp.read(CHUNK):
                fh.write(block)
                done += len(block)
                if progress:
                    progress(name, done, total)
        if total is not None and done < total:
            raise http.client.IncompleteRead(b"", total - done)


def fetch(remote: RemoteFile, dest: Path, url: str | None = None, policy: RetryPolicy | None = None,
          progress: Progress | None = None) -> Path:
    """Download `remote` to `dest` (resuming `dest.part`), verify its md5, then rename into place."""
    policy = policy or RetryPolicy()
    url = url or remote.url
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    delay = policy.backoff_s
    for attempt in range(1, policy.attempts + 1):
        try:
            _stream_once(url, part, policy, remote.name, progress)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # asked beyond the end: our partial file is stale
                part.unlink(missing_ok=True)
            elif exc.code < 500 and exc.code != 429:
                raise DownloadError(
                    f"{remote.name}: the server answered HTTP {exc.code} for {url}; "
                    f"check the URL or mirror, or {_manual_hint(remote, url, dest)}"
                ) from None
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            last = str(getattr(exc, "reason", exc)) or type(exc).__name__
        if attempt == policy.attempts:
            kept = (f"the partial file {part} is kept and the next run resumes it, or "
                    if part.exists() and part.stat().st_size else "")
            raise DownloadError(f"{remote.name}: download from {url} failed after {attempt} attempts ({last}); "
                                f"{kept}{_manual_hint(remote, url, dest)}")
        time.sleep(delay)
        delay *= 2
    if remote.md5:
        actual = md5sum(part)
        if actual != remote.md5:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{remote.name}: checksum mismatch (expected md5 {remote.md5}, got {actual}) for {url}; "
                f"the file was removed: retry, or {_manual_hint(remote, url, dest)}"
            )
    os.replace(part, dest)
    return dest


def is_verified(remote: RemoteFile, dest: Path) -> bool:
    return dest.is_file() and (remote.md5 is None or md5sum(dest) == remote.md5)


def file_url(remote: RemoteFile, mirror: str | None) -> str:
    return f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url


def download_source(source_name: str, variant: str | None = None, mirror: str | None = None,
                    name: str | None = None, policy: RetryPolicy | None = None,
                    progress: Progress | None = None) -> tuple[Dataset, bool]:
    """Fetch and import a source from the table; returns (dataset, whether anything was fetched)."""
    import hamcli.fsio as fsio
    import hamcli.paths as paths
    from hamcli.data.importers import import_dataset
    from hamcli.data.raw import Dataset
    from hamcli.data.sources import SOURCES, mirror_base

    if source_name not in SOURCES:
        raise DownloadError(f"unknown source {source_name!r}; choose one of {', '.join(SOURCES)} "
                            "(`hamcli download --list`)")
    source = SOURCES[source_name]
    if variant is not None and source.variants and variant not in source.variants:
        raise DownloadError(f"{source_name}: no size {variant!r}; choose one of {', '.join(source.variants)}")
    files = source.files_for(variant)
    name = name or source_name
    mirror = mirror or mirror_base(source_name)
    folder = paths.downloads_dir() / source_name
    target = paths.datasets_dir() / name
    stamp = target / "source.json"
    wanted = {f.name: f.md5 for f in files}
    if stamp.exists() and (target / "metadata.csv").exists():
        import json

        recorded = json.loads(stamp.read_text())
        if recorded.get("files") == wanted and all((folder / f).is_file() for f in wanted):
            return Dataset(name, target), False
    for remote in files:
        dest = folder / remote.name
        if not is_verified(remote, dest):
            fetch(remote, dest, file_url(remote, mirror), policy, progress)
    if source_name == "dermamnist":
        ds = import_dataset(folder / files[0].name, name=name, origin=source_name)
    else:
        ds = import_dataset(folder, name=name, origin=source_name)
    fsio.write_json(stamp, {"source": source_name, "files": wanted, "licence": source.licence})
    return ds, True
