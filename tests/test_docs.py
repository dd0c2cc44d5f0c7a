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


def _named_options(text: str) -> list[tuple[str, str]]:
    """(command, option) for each `--option` in a backticked or indented `hamcli COMMAND ...` in `text`; a
    command named without options gives (command, "--help"), so that it is checked too."""
    import re

    found = []
    for match in re.finditer(r"`hamcli ([a-z]+)([^`]*)`|^ {4,}hamcli ([a-z]+)(.*)$", text, re.MULTILINE):
        command, rest = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        rest = rest.split("#")[0].split("|")[0]  # not a comment's words, nor the next command of a pipe
        found += [(command, opt) for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest) or ["--help"]]
    return found


def test_every_option_a_message_or_page_names_exists():
    # The other way round: a message or a page that tells users to run `hamcli CMD --opt` names a real command
    # and option.
    root = Path(__file__).resolve().parents[1]
    texts = [*sorted((root / "src" / "hamcli").rglob("*.py")), *sorted(DOCS.glob("*.md")), root / "README.md"]
    commands = _commands()
    wrong = []
    for path in texts:
        for command, opt in _named_options(path.read_text()):
            if command not in commands:
                wrong.append(f"{path.relative_to(root)}: `hamcli {command}` (no such command)")
                continue
            known = {o for p in commands[command].params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
            if opt not in known:
                wrong.append(f"{path.relative_to(root)}: `hamcli {command} {opt}`")
    assert not wrong, "options that do not exist: " + "; ".join(sorted(set(wrong)))
