"""The recipes shipped with hamcli, and config files: `[prepare]` and `[train]` tables of options.

A recipe is a TOML file in this folder. Its `[recipe]` table says what it reproduces and what that
project claimed; `[prepare]` holds `hamcli prepare` options (plus `source`, the dataset to prepare) and
`[train]` holds `hamcli train` options (plus `all_folds`). A run records its own options in the same
form (`config.toml`), so `--config` repeats any run.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from hamcli.configfile import options, read
from hamcli.data.prepare import PrepareConfig
from hamcli.errors import UsageError
from hamcli.training.config import TrainConfig

FOLDER = Path(__file__).parent


@dataclass(frozen=True)
class Recipe:
    name: str
    about: dict[str, str]
    prepare: dict = field(default_factory=dict)
    source: str | None = None
    train: dict = field(default_factory=dict)
    all_folds: bool = False
    path: Path | None = None

    @property
    def data_name(self) -> str:
        """The prepared dataset this recipe trains on when no --data is given."""
        return f"recipe-{self.name}"


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.toml"))


def _parse(document: dict, name: str, where: Path) -> Recipe:
    unknown = set(document) - {"recipe", "prepare", "train"}
    if unknown:
        raise UsageError(f"{where}: unknown table(s) {', '.join(sorted(unknown))}; a config has [prepare] and "
                         "[train] (and [recipe])")
    for table in ("recipe", "prepare", "train"):
        if not isinstance(document.get(table, {}), dict):
            raise UsageError(f"{where}: {table} must be a table ([{table}] followed by key = value lines), not "
                             f"{type(document[table]).__name__} {str(document[table])[:40]}")
    prepare_table = dict(document.get("prepare", {}))
    source = prepare_table.pop("source", None)
    train_table = dict(document.get("train", {}))
    all_folds = train_table.pop("all_folds", False)
    if not isinstance(all_folds, bool) or not (source is None or isinstance(source, str)):
        raise UsageError(f"{where}: all_folds must be true or false and source a dataset name")
    prepare = options({"prepare": prepare_table}, "prepare", PrepareConfig, where)
    train = options({"train": train_table}, "train", TrainConfig, where)
    about = {k: str(v) for k, v in document.get("recipe", {}).items()}
    return Recipe(name, about, prepare, source, train, all_folds, where)


def load(name: str) -> Recipe:
    """A shipped recipe by name; an unknown name gets the closest one."""
    path = FOLDER / f"{name}.toml"
    if not path.is_file():
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(f"recipe {name!r}: no such recipe; {hint}`hamcli recipes` lists {', '.join(names())}")
    return _parse(read(path), name, path)


def from_file(path: Path) -> Recipe:
    """A config file (a recipe of your own, or a run's config.toml)."""
    path = Path(path)
    return _parse(read(path), path.stem, path)


def text(name: str) -> str:
    load(name)  # validated, and a clear error for a wrong name
    return (FOLDER / f"{name}.toml").read_text()


def prepared_for(recipe: Recipe, progress=None) -> tuple[str, bool]:  # noqa: ANN001
    """The prepared dataset `recipe` trains on (`recipe-NAME`), prepared now if it does not exist yet;
    returns (name, whether it was prepared now). One that exists with other settings is refused."""
    from hamcli.data.cache import PreparedDataset
    from hamcli.data.prepare import prepare
    from hamcli.errors import NotFoundError

    config = PrepareConfig(**recipe.prepare)
    config.check()
    try:
        existing = PreparedDataset.open(recipe.data_name)
    except NotFoundError:
        same = matching(recipe.source, config)
        if same is not None:  # prepared already, under another name: the same images, split and size
            return same, False
        prepare(recipe.source, recipe.data_name, config, progress)
        return recipe.data_name, True
    recorded = {k: existing.summary["config"].get(k) for k in recipe.prepare}
    if {k: str(v) for k, v in recorded.items()} != {k: str(v) for k, v in recipe.prepare.items()}:
        raise UsageError(f"prepared dataset {recipe.data_name!r} exists with other settings ({recorded}); pass "
                         f"--data NAME, or re-create it with `hamcli prepare --recipe {recipe.name} --overwrite`")
    return recipe.data_name, False


def matching(source: str | None, config: PrepareConfig) -> str | None:
    """A prepared dataset made from `source` with the same settings as `config` (split, size, seed, grouping,
    folds, limit), so the same split and the same cached images: a recipe trains on it instead of preparing a
    copy. The first by name; None if there is none."""
    from dataclasses import asdict

    from hamcli.data.cache import PreparedDataset
    from hamcli.data.raw import open_dataset
    from hamcli.errors import HamcliError
    from hamcli.paths import prepared_dir

    try:
        source_name = open_dataset(source).name
    except HamcliError:
        return None
    want = {k: str(v) for k, v in asdict(config).items() if k != "workers"}
    root = prepared_dir()
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name.startswith("."):
            continue
        try:
            summary = PreparedDataset.open(folder.name).summary
        except HamcliError:
            continue
        have = {k: str(v) for k, v in {**asdict(PrepareConfig()), **summary.get("config", {})}.items()
                if k != "workers"}
        if summary.get("source") == source_name and have == want:
            return folder.name
    return None


def describe_prepare(options: dict) -> str:
    """`split 85/15, size 150`: a recipe's [prepare] table in words."""
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in options.items())
