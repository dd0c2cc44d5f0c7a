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
BUNDLED_FILE = Path(__file__).parent / "bundled" / "ham10000-efficientnet-lite.pt"
LATEST_FILE = "latest.json"  # in the runs folder: the run finished last, the default model


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
    """Run folders (with a checkpoint) and fold families, in name order."""
    root = paths.runs_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir() and
                  ((p / "best.pt").exists() or (p / "last.pt").exists() or (p / "family.json").exists()))


def set_latest(run_dir: Path) -> None:
    """Record `run_dir` as the default model: the run that finished last (an interrupted or half-written run
    never is)."""
    import hamcli.fsio as fsio

    fsio.write_json(run_dir.parent / LATEST_FILE, {"run": run_dir.name})


def finished(run: Path) -> bool:
    """A family, or a run whose training ended normally (all its epochs, or stopped early)."""
    if is_family(run):
        return True
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and bool(metrics.get("finished") or metrics.get("stopped_early"))


def latest() -> Path | None:
    """The recorded default model if it is still there and finished; else the finished run written last."""
    runs = [p for p in list_runs() if finished(p)]
    try:
        name = json.loads((paths.runs_dir() / LATEST_FILE).read_text())["run"]
    except (OSError, ValueError, KeyError, TypeError):
        name = None
    by_name = {p.name: p for p in runs}
    if isinstance(name, str) and name in by_name:
        return by_name[name]
    dated = [p for p in runs if (p / "config.json").exists()]
    return max(dated, key=lambda p: (p / "config.json").stat().st_mtime) if dated else None


def is_family(path: Path) -> bool:
    return (path / "family.json").exists()


def family_members(path: Path) -> list[Path]:
    """The member folders family.json lists; a name that is not one plain folder name is refused, so an edited
    file cannot point outside the family."""
    from hamcli.errors import DataError
    from hamcli.slots import NAME

    try:
        names = json.loads((path / "family.json").read_text())["members"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"{path / 'family.json'}: unreadable or without a members list; the ensemble is damaged: "
                        "make it again with `hamcli ensemble`") from None
    if not isinstance(names, list) or not all(isinstance(n, str) and NAME.match(n) and n not in (".", "..")
                                              for n in names):
        raise DataError(f"{path / 'family.json'}: its members are not plain run names; the file is damaged or "
                        "edited: make the ensemble again with `hamcli ensemble`")
    return [path / m for m in names]


def _run_named(ref: str | Path) -> Path | None:
    """The run `ref` names when it is a bare name (no folder part) of an existing run: a run's name wins over a
    folder of that name in the current directory, which `./NAME` still reaches."""
    text = str(ref)
    if not isinstance(ref, str) or not text or any(c in text for c in "/\\") or text in (".", "..") or text[0] == "~":
        return None
    named = paths.runs_dir() / text
    return named if named.is_dir() else None


def resolve_run(ref: str | Path) -> Path:
    """A run folder from a run name or a folder path."""
    named = _run_named(ref)
    if named is not None:
        return named
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    named = paths.runs_dir() / str(ref)
    if named.is_dir():
        return named
    names = ", ".join(p.name for p in list_runs()) or "none"
    if path.exists():  # there, but neither a folder nor (resolve_model's check) a regular file
        raise NotFoundError(f"{ref}: not a regular file (a pipe, socket or device), nor a run folder")
    if path.suffix.lower() in (".pt", ".pth", ".onnx") or len(path.parts) > 1:  # written as a path: a missing one
        raise NotFoundError(f"{ref}: no such file or folder (runs by name: {names})")
    raise NotFoundError(f"no run {str(ref)!r} (not a folder, nor a run in {paths.runs_dir()}; present: {names})")


def resolve_model(ref: str | Path | None) -> Path:
    """What a model argument names: a checkpoint file, a run folder (or fold family), or the bundled model.

    None means the latest run, or the bundled model when there is no run yet.
    """
    if ref is None:
        return latest() or BUNDLED_FILE
    if _run_named(ref) is not None:
        return resolve_run(ref)
    if Path(ref).is_file():
        return Path(ref)
    return BUNDLED_FILE if ref == BUNDLED else resolve_run(ref)


def resolve_checkpoint(ref: str | Path | None) -> Path:
    """A checkpoint file: a .pt path as given, a run's best.pt (else last.pt), or the bundled model."""
    run = resolve_model(ref)
    if run.is_file():
        return run
    if is_family(run):
        raise NotFoundError(f"{run} is an ensemble: load it with hamcli.load_model (the average of its runs), "
                            f"or name one member, e.g. {family_members(run)[0]}")
    for name in ("best.pt", "last.pt"):
        if (run / name).exists():
            return run / name
    raise NotFoundError(f"{run}: no best.pt or last.pt; the run did not finish an epoch")


def finished_checkpoint(run_dir: Path, option: str) -> Path:
    """The best.pt of a run that finished (or stopped early); `option` names the flag that asked for it,
    for the error. An interrupted run's best.pt is only the best of the epochs it reached."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    if not (run_dir / "best.pt").exists() or not (metrics.get("finished") or metrics.get("stopped_early")):
        raise UsageError(f"{option}: {run_dir} did not finish; resume it (`hamcli train --resume "
                         f"{run_dir.name}`) or name a finished run")
    return run_dir / "best.pt"


def runs_using(prepared: str) -> list[str]:
    """The runs (and families) whose config names `prepared` as their data."""
    found = []
    for run in list_runs():
        try:
            data = json.loads((run / "config.json").read_text()).get("data")
        except (OSError, ValueError):
            continue
        if data == prepared:
            found.append(run.name)
    return found
