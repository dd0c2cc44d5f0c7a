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

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hamcli._version import __version__
from hamcli.classes import CLASS_CODES, CLASS_NAMES
from hamcli.errors import HamcliError

if TYPE_CHECKING:
    from pathlib import Path

    from hamcli.inference.predictor import Prediction, Predictor

__all__ = ["CLASS_CODES", "CLASS_NAMES", "HamcliError", "Prediction", "Predictor", "__version__", "download",
           "evaluate", "gradcam", "load_model", "prepare", "train"]


@contextlib.contextmanager
def _in_python_words(aliases: dict[str, str] | None = None) -> Iterator[None]:
    """Errors raised inside the library name command-line options (`--freeze-early 3: ...`); a Python caller
    passed keywords. Outside backticks (which quote commands to run), `--some-option` becomes `some_option`
    (or its keyword in `aliases`, e.g. `--class` -> `target`)."""
    try:
        yield
    except HamcliError as exc:
        if exc.args and isinstance(exc.args[0], str):
            parts = exc.args[0].split("`")
            for i in range(0, len(parts), 2):  # even parts lie outside backticks
                parts[i] = re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)",
                                  lambda m: (aliases or {}).get(m.group(0), m.group(1).replace("-", "_")), parts[i])
            exc.args = ("`".join(parts), *exc.args[1:])
        raise


def load_model(run_or_path: str | Path | None = None, device: str = "auto", precision: str = "fp32") -> Predictor:
    """Load a model to predict with: a run name or folder, a checkpoint file, a K-fold family (the ensemble
    of its folds), an ensemble, an exported .onnx file, or "bundled" for the model shipped with hamcli.
    Default: the run finished last, else the bundled model. `device`: auto, cpu, cuda or mps. `precision`:
    fp32 (every image the same probabilities alone or in any batch), or bf16 (fp16 on a GPU), faster, with
    probabilities that move in the second or third decimal.

        >>> model = hamcli.load_model()
        >>> model.predict("lesion.jpg").code          # or a list of paths / PIL images -> a list
    """
    from hamcli.inference.load import load_model as load

    return load(run_or_path, device=device, precision=precision)


def download(source: str = "ham10000", from_path: str | Path | None = None, name: str | None = None) -> Any:
    """Fetch `source` (ham10000, isic2018-test, dermamnist) from its official home, verified and resumable,
    or import `from_path`, a copy you have (zip, folder, CSV, npz). Returns the dataset; `.report` says
    what was found."""
    from pathlib import Path

    with _in_python_words({"--from": "from_path"}):
        if from_path is not None:
            from hamcli.data.importers import import_dataset

            return import_dataset(Path(from_path), name=name or "ham10000")
        from hamcli.data.download import download_source

        return download_source(source, name=name)[0]


def prepare(source: str | None = None, name: str | None = None, **options: Any) -> Any:
    """Split a dataset by lesion and cache its images; options as `hamcli prepare` (`split="85/15"`,
    `size=128` or `size="200x150"`, `folds`, `limit`, `seed`, `group_by`). Returns the prepared dataset."""
    from hamcli.data.prepare import PrepareConfig
    from hamcli.data.prepare import prepare as run

    with _in_python_words():
        return run(source, name, PrepareConfig(**options))


def train(**options: Any) -> Path:
    """Train a model; options as `hamcli train` with underscores (`arch="efficientnet_lite0"`,
    `pretrained=True`, `data=...`, `epochs`, `freeze_early`, `ema`, ...). Returns the run folder."""
    from hamcli.training.config import TrainConfig
    from hamcli.training.runner import train as run

    with _in_python_words():
        return run(TrainConfig(**options))


def evaluate(run: str | Path | None = None, **options: Any) -> dict:
    """Score a run (default: the run finished last) on its test split, or on a labelled folder with
    `data=`; options as `hamcli evaluate` (`split="val"`, `ci=True`, `tta=True`, ...). Returns a dict with
    `metrics` (accuracy, balanced_accuracy, per_class, confusion_matrix, ...) and `predictions`."""
    from hamcli.evaluation.scoring import evaluate as score

    with _in_python_words():
        return score(run, **options)


def gradcam(model: Predictor, image: Any, **options: Any) -> Any:
    """Explain one image (a path or a PIL image) with `model` from `load_model`; options `target` ("pred" or
    a class code), `method`, `layer`. Returns an Explanation: `.heatmap` (H, W) in [0, 1] over `.image`,
    `.predicted`, `.probability`, `.layer`. `hamcli.explain.overlay.overlay/panel` draw it."""
    from hamcli.explain.maps import explain

    with _in_python_words({"--class": "target"}):
        return explain(model, image, **options)


def __getattr__(name: str) -> Any:
    if name in ("Predictor", "Prediction"):
        import hamcli.inference.predictor as predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'hamcli' has no attribute {name!r}")
