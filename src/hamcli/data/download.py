"""Fetching files over HTTP: streamed to a partial file, resumed with Range, retried, verified.

Standard library only (urllib): the one feature we need beyond it, resuming, is a header.
"""

from __future__ import annotations

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
from hamcli.data.verify import is_verified, problem, record
from hamcli.errors import DownloadError, UsageError

if TYPE_CHECKING:
    from hamcli.data.raw import Dataset

CHUNK = 1 << 20
Progress = Callable[[str, int, int | None], None]  # (file name, bytes done, total or None)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_s: float = 1.0  # doubled after each failed attempt
    timeout_s: float = 60.0  # for each network read
    min_bytes_per_s: float = 2048.0  # a server slower than this over `window_s` is given up on
    window_s: float = 60.0


class TooSlow(OSError):
    """The server sends too little, too slowly: each read is in time, the download never ends."""


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
            window_start, window_bytes = time.monotonic(), 0
            while block := resp.read1(CHUNK):  # read1: whatever has arrived, so a trickle is noticed
                fh.write(block)
                done += len(block)
                window_bytes += len(block)
                if progress:
                    progress(name, done, total)
                elapsed = time.monotonic() - window_start
                if elapsed >= policy.window_s:
                    if window_bytes / elapsed < policy.min_bytes_per_s:
                        raise TooSlow(f"only {window_bytes / elapsed:.0f} bytes/s over {elapsed:.0f} s")
                    window_start, window_bytes = time.monotonic(), 0
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
    why = problem(remote, part)
    if why:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{remote.name}: {why}, from {url}; the file was removed: retry, or "
                            f"{_manual_hint(remote, url, dest)}")
    os.replace(part, dest)
    record(remote, dest)
    return dest


def file_url(remote: RemoteFile, mirror: str | None) -> str:
    return f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url


def check_url(url: str) -> str:
    """A mirror base URL must be http(s) with a host: anything else is refused before any download starts."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"--url {url!r}: give an http:// or https:// address, e.g. https://mirror.example.org/ham")
    return url


def download_source(source_name: str, variant: str | None = None, mirror: str | None = None,
                    name: str | None = None, policy: RetryPolicy | None = None,
                    progress: Progress | None = None, overwrite: bool = False) -> tuple[Dataset, bool]:
    """Fetch and import a source from the table; returns (dataset, whether anything was fetched).

    A dataset of the same name from the same source is refreshed; one from elsewhere (an import, another
    source) is replaced only with `overwrite`.
    """
    import json

    import hamcli.fsio as fsio
    import hamcli.paths as paths
    from hamcli.data.importers import import_dataset
    from hamcli.data.raw import Dataset
    from hamcli.data.sources import SOURCES, mirror_base
    from hamcli.slots import check_name

    if source_name not in SOURCES:
        import difflib

        close = difflib.get_close_matches(source_name, [*SOURCES, "samples"], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DownloadError(f"unknown source {source_name!r}; {hint}choose one of {', '.join(SOURCES)} or samples "
                            "(`hamcli download --list`)")
    source = SOURCES[source_name]
    if variant is not None and not source.variants:
        raise UsageError(f"--size {variant}: {source_name} comes in one size; --size is for "
                         f"{', '.join(n for n, s in SOURCES.items() if s.variants)}")
    if variant is not None and variant not in source.variants:
        raise UsageError(f"--size {variant}: {source_name} comes in {', '.join(source.variants)}")
    files = source.files_for(variant)
    name = check_name(source_name if name is None else name)
    mirror = mirror or mirror_base(source_name)
    if mirror is not None:
        check_url(mirror)
    folder = paths.downloads_dir() / source_name
    target = paths.datasets_dir() / name
    stamp = target / "source.json"
    wanted = {f.name: f.md5 for f in files}
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        recorded = {}
    if recorded.get("files") == wanted and (target / "metadata.csv").exists() and \
            all(is_verified(f, folder / f.name) for f in files):
        return Dataset(name, target), False
    for remote in files:
        dest = folder / remote.name
        if not is_verified(remote, dest):
            fetch(remote, dest, file_url(remote, mirror), policy, progress)
    refresh = overwrite or recorded.get("source") == source_name
    if source_name == "dermamnist":
        ds = import_dataset(folder / files[0].name, name=name, origin=source_name, overwrite=refresh)
    else:
        ds = import_dataset(folder, name=name, origin=source_name, overwrite=refresh)
    fsio.write_json(stamp, {"source": source_name, "files": wanted, "licence": source.licence})
    return ds, True
