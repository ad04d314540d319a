"""What `trialfuse COMMAND --help` shows: every option's help text as written. Typer renders
help through rich, which reads `[...]` as markup and drops it, so `pip install
'trialfuse[ray]'` once printed as `pip install 'trialfuse'`."""
from __future__ import annotations

import re

import pytest
import typer

from helpers import cli
from trialfuse.cli import app


def _words(text: str) -> str:
    """The help's words without rich's boxes and line breaks (it wraps to the terminal)."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("command", sorted(c.name for c in typer.main.get_command(app).commands.values()))
def test_every_bracket_in_a_help_text_is_shown(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    shown = _words(cli(command, "--help").stdout)
    click_command = typer.main.get_command(app).commands[command]
    texts = [click_command.help or ""] + [p.help or "" for p in click_command.params]
    written = [text.split("\n\n")[0] for text in texts if "[" in text]
    for text in written:
        assert _words(text.replace("\\[", "[")) in shown


def test_the_ray_option_names_the_extra_to_install(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert "pip install 'trialfuse[ray]'" in _words(cli("run", "--help").stdout)
