"""What is present in the user directories, for `hamcli info`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import hamcli.paths as paths
from hamcli._version import __version__
from hamcli.data.preprocess import size_text
from hamcli.errors import HamcliError


def _size(path: Path) -> str:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    for unit in ("B", "KB", "MB", "GB"):
        if total < 1024 or unit == "GB":
            return f"{total:.0f} {unit}" if unit == "B" else f"{total:.1f} {unit}"
        total /= 1024
    return ""


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def collect() -> dict:
    from hamcli.data.cache import list_prepared
    from hamcli.data.raw import list_datasets

    datasets = []
    for ds in list_datasets():
        report = ds.report
        counts = report.get("per_class", {})
        datasets.append({"name": ds.name, "images": report.get("images", "?"), "size": _size(ds.root),
                         "classes": " ".join(f"{k}:{v}" for k, v in counts.items()),
                         "origin": report.get("origin", "")})
    prepared = []
    for p in list_prepared():
        try:
            prepared.append({"name": p.name, "images": p.summary["images"], "split": p.summary["split"],
                             "px": size_text(p.size), "source": p.summary["source"], "fingerprint": p.fingerprint,
                             "size": _size(p.root)})
        except (HamcliError, KeyError, TypeError, ValueError):
            prepared.append({"name": p.name, "images": None, "split": "damaged: prepare it again", "px": None,
                             "source": None, "fingerprint": None, "size": _size(p.root)})
    runs = [_run_row(run) for run in sorted(paths.runs_dir().iterdir())] if paths.runs_dir().is_dir() else []
    runs = [r for r in runs if r]
    from hamcli.runs import BUNDLED_FILE

    runs.append({"name": "bundled", "arch": _bundled_arch(BUNDLED_FILE),
                 "data": _json(BUNDLED_FILE.with_suffix(".json")).get("data", "?"), "epochs": "-",
                 "status": "shipped with hamcli", "val balanced acc": None})
    return {
        "version": __version__,
        "directories": {"data": str(paths.data_dir()), "cache": str(paths.cache_dir()),
                        "override": os.environ.get("HAMCLI_HOME", "(HAMCLI_HOME not set)")},
        "datasets": datasets,
        "prepared": prepared,
        "runs": runs,
    }


def _run_row(run: Path) -> dict | None:
    """One line per run or K-fold family: where it stands and its best validation score."""
    cfg = _json(run / "config.json")
    if not cfg or run.name.startswith("."):
        return None
    metrics = _json(run / "metrics.json")
    family = _json(run / "family.json")
    if family:
        score = family.get("val", {}).get("val_balanced_accuracy", {}).get("mean")
        status = (f"ensemble of {len(family['ensemble_of'])} runs" if family.get("ensemble_of")
                  else f"K-fold family of {family.get('folds', '?')}")
        return {"name": run.name, "arch": cfg.get("arch", "-"), "data": cfg.get("data") or "-",
                "epochs": cfg.get("epochs", "-"), "status": status,
                "val balanced acc": score}
    done = metrics.get("epochs_run")
    planned = cfg.get("epochs")
    if not (run / "best.pt").exists() and not (run / "last.pt").exists():
        status = "no epoch finished"
    elif metrics.get("finished") or (done is not None and planned is not None and done >= planned):
        status = "finished"
    elif metrics.get("stopped_early"):
        status = "stopped early"
    else:
        status = f"interrupted: hamcli train --resume {run.name}"
    return {"name": run.name, "arch": cfg.get("arch", "-"), "data": cfg.get("data") or "-",
            "epochs": f"{done or 0}/{planned}", "status": status,
            "val balanced acc": metrics.get("best", {}).get("balanced_accuracy")}


def _bundled_arch(path: Path) -> str:
    """The bundled model's architecture, from the summary beside it (loading the checkpoint needs torch)."""
    return _json(path.with_suffix(".json")).get("arch") or path.stem.removeprefix("ham10000-").replace("-", "_")
