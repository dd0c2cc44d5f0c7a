"""Named things on disk (datasets, prepared datasets, runs): safe names, exclusive claims, crash-safe swaps.

`<folder>/<name>` is a symbolic link to a complete version in `<folder>/.versions/`. A new version is
built in a `.tmp` folder beside the others, renamed when complete, and published by replacing the link
in one `rename(2)`: at every instant the name points to a whole old version or a whole new one, even if
the process is killed. A claim is a lock file held with `flock`, released by the kernel when the process
dies, so two processes never write one name and a killed one never blocks the next. Leftovers of killed
processes (`.tmp` versions, unreferenced versions) are removed by the next claim of that name. Names
from hamcli 0.1 that are plain folders keep working and are moved aside, not lost, when replaced.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import hamcli.fsio as fsio
from hamcli.errors import HamcliError, UsageError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # \Z, not $: "run\n" is no name
VERSIONS = ".versions"
LOCKS = ".locks"


class BusyError(HamcliError):
    """Another hamcli process is writing this name."""


def check_name(name: str, option: str = "--name") -> str:
    """A name is one folder name: letters, digits, '.', '_' and '-', starting with a letter or digit."""
    if not isinstance(name, str) or not NAME.match(name) or name in (".", ".."):
        raise UsageError(f"{option} {name!r}: a name is one folder name of letters, digits, '.', '_' and '-' "
                         "(at most 100), starting with a letter or digit")
    return name


@contextlib.contextmanager
def claim(folder: Path, name: str, what: str) -> Iterator[None]:
    """Hold the exclusive claim on `name` in `folder`; a second claimant fails at once, exit code 1."""
    locks = folder / LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    fh = open(locks / f"{name}.lock", "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no claim (documented); the versions still make writes crash-safe
            pass
        except BlockingIOError:
            raise BusyError(f"{what} {name!r} is being written by another hamcli process right now; wait for it "
                            "to finish, or use another --name") from None
        yield
    finally:
        fh.close()


def version_of(folder: Path, name: str) -> Path | None:
    """The complete folder that `folder/name` stands for, or None. Heals a name whose link a crash removed
    in the middle of replacing a 0.1-style folder, by linking the newest complete version."""
    entry = folder / name
    if entry.is_dir():
        return entry.resolve()
    versions = sorted(p for p in (folder / VERSIONS).glob(f"{name}@*") if p.is_dir() and p.suffix != ".tmp")
    if not versions or entry.is_symlink():
        return None
    _link(folder, name, versions[-1])
    return versions[-1]


def _link(folder: Path, name: str, target: Path) -> None:
    tmp = folder / f".{name}.link-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, folder), tmp)
    os.replace(tmp, folder / name)  # one rename: the name never points nowhere


def clean(folder: Path, name: str, keep: set[Path], drop_unreferenced: bool = False) -> None:
    """Remove what killed writers of `name` left behind (call with the claim held)."""
    for path in (folder / VERSIONS).glob(f"{name}@*"):
        if path.resolve() in keep:
            continue
        if path.suffix == ".tmp" or drop_unreferenced:
            shutil.rmtree(path, ignore_errors=True)
    for stale in folder.glob(f".{name}.link-*"):
        stale.unlink(missing_ok=True)


def public_path(path: Path) -> Path:
    """How a user names `path`: a version folder (`.versions/NAME@STAMP.tmp/...`, where a run is written or
    revised) shown as the name it stands for (`NAME/...`)."""
    parts = list(Path(path).parts)
    for i in range(1, len(parts)):
        if parts[i - 1] == VERSIONS and "@" in parts[i]:
            return Path(*parts[:i - 1], parts[i].split("@", 1)[0], *parts[i + 1:])
    return Path(path)


def new_version(folder: Path, name: str) -> Path:
    """An empty `.tmp` folder for a new version of `name`."""
    versions = folder / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}@{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".tmp", dir=versions))


def publish(folder: Path, name: str, tmp: Path) -> Path:
    """Make the finished `tmp` version what `folder/name` stands for; the old version is removed after."""
    final = tmp.with_name(tmp.name.removesuffix(".tmp"))
    mask = os.umask(0o022)
    os.umask(mask)
    tmp.chmod(0o777 & ~mask)  # mkdtemp makes 0700; give the version the mode mkdir would
    os.replace(tmp, final)
    old = version_of(folder, name)
    entry = folder / name
    if entry.is_dir() and not entry.is_symlink():  # a hamcli 0.1 folder: move it aside as a version first
        legacy = folder / VERSIONS / f"{name}@legacy-{os.getpid()}"
        os.replace(entry, legacy)
        old = legacy
    _link(folder, name, final)
    if old is not None and old.resolve() != final.resolve():
        shutil.rmtree(old, ignore_errors=True)
    return folder / name


@contextlib.contextmanager
def replace(folder: Path, name: str, what: str, overwrite: bool = False, hint: str = "") -> Iterator[Path]:
    """Build a new version of `name` in the yielded folder; on success it replaces the old one atomically.

    An existing `name` is refused unless `overwrite`; on failure the new version is removed and the old
    one is untouched.
    """
    check_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    with claim(folder, name, what):
        current = version_of(folder, name)
        clean(folder, name, {current} if current else set(), drop_unreferenced=True)
        if current is not None and not overwrite:
            raise UsageError(f"{what} {name!r} already exists in {folder}; choose another --name, or pass "
                             f"--overwrite to replace it{hint}")
        tmp = new_version(folder, name)
        try:
            yield tmp
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, (OSError, RuntimeError)) and fsio.is_disk_full(exc, folder):
                raise fsio.disk_full(folder / name) from None
            raise
        publish(folder, name, tmp)


@contextlib.contextmanager
def revise(folder: Path, name: str, what: str) -> Iterator[Path]:
    """Change an existing `name` as a whole: the yielded folder starts as a copy of it (files hard-linked, so
    every change must replace a file, as hamcli's atomic writes do) and replaces it atomically on success; on
    failure, or if the process dies, the old version is what `name` still stands for."""
    with claim(folder, name, what):
        current = version_of(folder, name)
        if current is None:
            raise UsageError(f"{what} {name!r}: not found in {folder}")
        clean(folder, name, {current})
        tmp = new_version(folder, name)
        try:
            shutil.copytree(current, tmp, dirs_exist_ok=True, copy_function=_link_or_copy, symlinks=True)
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        publish(folder, name, tmp)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or no hard links
        shutil.copy2(source, target)
