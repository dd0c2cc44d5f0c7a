"""The docs cannot drift from the CLI: every long option of every command is on that command's page."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from hamcli.cli.app import app

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = {"download": "download.md", "prepare": "prepare.md", "info": "info.md", "models": "train.md",
         "train": "train.md", "ensemble": "train.md", "calibrate": "train.md", "evaluate": "evaluate.md",
         "predict": "predict.md", "gradcam": "gradcam.md", "recipes": "recipes.md", "serve": "serve.md",
         "export": "export.md"}


def _commands() -> dict:
    return typer.main.get_command(app).commands


def test_every_command_has_a_page():
    assert set(_commands()) <= set(PAGES), f"add a docs page for {set(_commands()) - set(PAGES)}"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_long_option_is_documented(name):
    command = _commands()[name]
    text = (DOCS / PAGES[name]).read_text()
    options = sorted({opt for param in command.params if not getattr(param, "hidden", False)
                      for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--") and opt != "--help"})
    missing = [opt for opt in options if opt not in text]
    assert not missing, f"docs/{PAGES[name]} does not mention {', '.join(missing)} of `hamcli {name}`"
