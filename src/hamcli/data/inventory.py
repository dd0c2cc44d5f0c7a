"""What is present in the user directories, for `hamcli info`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import hamcli.paths as paths
from hamcli._version import __version__
from hamcli.data.preprocess import size_text


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
    prepared = [{"name": p.name, "images": p.summary["images"], "split": p.summary["split"],
                 "px": size_text(p.size), "source": p.summary["source"], "fingerprint": p.fingerprint,
                 "size": _size(p.root)} for p in list_prepared()]
    runs = []
    runs_root = paths.runs_dir()
    if runs_root.is_dir():
        for run in sorted(runs_root.iterdir()):
            cfg = _json(run / "config.json")
            if not cfg:
                continue
            best = _json(run / "metrics.json")
            runs.append({"name": run.name, "arch": cfg.get("arch", "?"), "data": cfg.get("data", "?"),
                         "epochs": best.get("epochs_run", "?"),
                         "val balanced acc": best.get("best", {}).get("balanced_accuracy", "?")})
    return {
        "version": __version__,
        "directories": {"data": str(paths.data_dir()), "cache": str(paths.cache_dir()),
                        "override": os.environ.get("HAMCLI_HOME", "(HAMCLI_HOME not set)")},
        "datasets": datasets,
        "prepared": prepared,
        "runs": runs,
    }
