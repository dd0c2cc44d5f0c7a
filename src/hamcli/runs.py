"""Run directories: naming, finding the latest, resolving what the user pointed at.

Where no run exists, the model bundled with hamcli stands in (`bundled` names it explicitly).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hamcli.paths as paths
from hamcli.errors import NotFoundError, UsageError

BUNDLED = "bundled"
BUNDLED_FILE = Path(__file__).parent / "bundled" / "ham10000-lenet96.pt"


def check_run_name(name: str) -> None:
    if name == BUNDLED:
        raise UsageError(f"--name {BUNDLED!r} is reserved for the model bundled with hamcli; choose another name")


def new_run_name(arch: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{arch}-{stamp}"
    n = 1
    while (paths.runs_dir() / name).exists():
        n += 1
        name = f"{arch}-{stamp}-{n}"
    return name


def list_runs() -> list[Path]:
    """Run folders (with a checkpoint) and fold families, oldest first."""
    root = paths.runs_dir()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if not p.name.startswith(".") and
             ((p / "best.pt").exists() or (p / "last.pt").exists() or (p / "family.json").exists())]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def is_family(path: Path) -> bool:
    return (path / "family.json").exists()


def family_members(path: Path) -> list[Path]:
    return [path / m for m in json.loads((path / "family.json").read_text())["members"]]


def resolve_run(ref: str | Path) -> Path:
    """A run folder from a run name or a folder path."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    named = paths.runs_dir() / str(ref)
    if named.is_dir():
        return named
    names = ", ".join(p.name for p in list_runs()) or "none"
    raise NotFoundError(f"no run {str(ref)!r} (not a folder, nor a run in {paths.runs_dir()}; present: {names})")


def resolve_model(ref: str | Path | None) -> Path:
    """What a model argument names: a checkpoint file, a run folder (or fold family), or the bundled model.

    None means the latest run, or the bundled model when there is no run yet.
    """
    if ref is None:
        runs = list_runs()
        return runs[-1] if runs else BUNDLED_FILE
    if Path(ref).is_file():
        return Path(ref)
    return BUNDLED_FILE if ref == BUNDLED else resolve_run(ref)


def resolve_checkpoint(ref: str | Path | None) -> Path:
    """A checkpoint file: a .pt path as given, a run's best.pt (else last.pt), or the bundled model."""
    run = resolve_model(ref)
    if run.is_file():
        return run
    if is_family(run):
        raise NotFoundError(f"{run} is a K-fold family; pick one member, e.g. {family_members(run)[0]}")
    for name in ("best.pt", "last.pt"):
        if (run / name).exists():
            return run / name
    raise NotFoundError(f"{run}: no best.pt or last.pt; the run did not finish an epoch")
