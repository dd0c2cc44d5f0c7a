"""hamcli: train, evaluate and explain skin-lesion classifiers on HAM10000.

Importing this package is cheap: torch and the other heavy libraries load only when a
function that needs them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hamcli.classes import CLASS_CODES, CLASS_NAMES
from hamcli.errors import HamcliError

__version__ = "0.1.0"

__all__ = ["CLASS_CODES", "CLASS_NAMES", "HamcliError", "__version__", "load_model"]

if TYPE_CHECKING:
    from hamcli.predict import Predictor


def load_model(run_or_path: str | None = None, device: str = "auto") -> Predictor:
    """Load a model: a run name, run directory, checkpoint file, or "bundled" for the model shipped with
    hamcli. Default: the latest run, else the bundled model."""
    from hamcli.predict import Predictor

    return Predictor.load(run_or_path, device=device)
