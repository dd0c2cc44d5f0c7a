"""Where every benchmark's figures go: printed, and appended to bench/results/<script>.jsonl with the CPU,
the torch version and the date, so that no figure in docs/benchmarks.md is without its source."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = "?"
    try:
        import torch

        version = torch.__version__
    except ImportError:
        version = None
    return {"cpu": cpu, "torch": version, "date": time.strftime("%Y-%m-%d")}


def emit(row: dict, name: str | None = None) -> None:
    """Print `row` as one JSON line and append it, with the machine, to bench/results/NAME.jsonl."""
    name = name or Path(sys.argv[0]).stem
    line = json.dumps({**row, **machine()})
    print(line, flush=True)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{name}.jsonl", "a") as fh:
        fh.write(line + "\n")
