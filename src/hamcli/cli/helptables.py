"""Help that fits an 80-column terminal: typer's option tables fold long words instead of cutting them.

At 80 columns rich shortened long option names and long words of an option's help with an ellipsis
(`--backbone-lr-mu…`), hiding the very name a user has to type. Applied only when help is shown, so start-up
does not pay for importing typer's rich help module.
"""

from __future__ import annotations

from rich.columns import Columns
from rich.table import Table
from rich.text import Text


class _HelpTable(Table):
    """Every column folds; the option names' column keeps its width where the terminal allows."""

    def add_row(self, *renderables, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().add_row(*renderables, **kwargs)
        for column in self.columns:
            column.overflow = "fold"
        if self.columns:  # the option names: as wide as the longest, so that none is folded
            names = self.columns[0]
            names.no_wrap = True
            names.min_width = max((len(getattr(cell, "plain", str(cell))) for cell in names._cells), default=0)


class _HelpColumns(Columns):
    """An option's help (its text, default and range), each part folding its long words."""

    def __init__(self, renderables=None, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        renderables = list(renderables or [])
        for item in renderables:
            if isinstance(item, Text):
                item.overflow = "fold"
        super().__init__(renderables, *args, **kwargs)


def fold_help_tables() -> None:
    """Point typer's rich help at the folding table and columns (idempotent)."""
    import typer.rich_utils

    typer.rich_utils.Table = _HelpTable
    typer.rich_utils.Columns = _HelpColumns
