"""hamcli: train, evaluate and explain skin-lesion classifiers on HAM10000.

    >>> import hamcli
    >>> model = hamcli.load_model()                 # the latest run, else the bundled model
    >>> model.predict("lesion.jpg").code
    'nv'

The whole pipeline is here as functions: `download`, `prepare`, `train`, `evaluate`, `load_model`,
`gradcam`. Importing this package is cheap: torch and the other heavy libraries load only when a
function that needs them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hamcli._version import __version__
from hamcli.classes import CLASS_CODES, CLASS_NAMES
from hamcli.errors import HamcliError

if TYPE_CHECKING:
    from pathlib import Path

    from hamcli.inference.predictor import Prediction, Predictor

__all__ = ["CLASS_CODES", "CLASS_NAMES", "HamcliError", "Prediction", "Predictor", "__version__", "download",
           "evaluate", "gradcam", "load_model", "prepare", "train"]


def load_model(run_or_path: str | Path | None = None, device: str = "auto") -> Predictor:
    """Load a model to predict with: a run name or folder, a checkpoint file, a K-fold family (the ensemble
    of its folds), or "bundled" for the model shipped with hamcli. Default: the run started last, else the
    bundled model. `device`: auto, cpu, cuda or mps.

        >>> model = hamcli.load_model()
        >>> model.predict("lesion.jpg").code          # or a list of paths / PIL images -> a list
    """
    from hamcli.inference.load import load_model as load

    return load(run_or_path, device=device)


def download(source: str = "ham10000", from_path: str | Path | None = None, name: str | None = None) -> Any:
    """Fetch a source from its official home (or import `from_path`, a copy you have); returns the dataset."""
    from pathlib import Path

    if from_path is not None:
        from hamcli.data.importers import import_dataset

        return import_dataset(Path(from_path), name=name or "ham10000")
    from hamcli.data.download import download_source

    return download_source(source, name=name)[0]


def prepare(source: str | None = None, name: str | None = None, **options: Any) -> Any:
    """Split a dataset by lesion and cache its images (options as `hamcli prepare`: split, size, folds, ...)."""
    from hamcli.data.prepare import PrepareConfig
    from hamcli.data.prepare import prepare as run

    return run(source, name, PrepareConfig(**options))


def train(**options: Any) -> Path:
    """Train a model (options as `hamcli train`: arch, data, epochs, ...); returns the run folder."""
    from hamcli.train.config import TrainConfig
    from hamcli.train.engine import train as run

    return run(TrainConfig(**options))


def evaluate(run: str | Path | None = None, **options: Any) -> dict:
    """Score a run on its test split, or on a labelled folder with `data=`; returns metrics and predictions."""
    from hamcli.evaluate.scoring import evaluate as run

    return run(run, **options)


def gradcam(model: Predictor, image: Any, **options: Any) -> Any:
    """Explain one image with `model` (from `load_model`): an Explanation with its heat map."""
    from hamcli.explain.maps import explain

    return explain(model, image, **options)


def __getattr__(name: str) -> Any:
    if name in ("Predictor", "Prediction"):
        import hamcli.inference.predictor as predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'hamcli' has no attribute {name!r}")
