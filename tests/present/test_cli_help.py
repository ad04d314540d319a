"""What `trialfuse COMMAND --help` shows: every option's help text as written. Typer renders
help through rich, which reads `[...]` as markup and drops it, so `pip install
'trialfuse[ray]'` once printed as `pip install 'trialfuse'`."""
from __future__ import annotations

import re

import typer

from helpers import cli
from trialfuse.cli import app


def _words(text: str) -> str:
    """The help's words without rich's boxes and line breaks (it wraps to the terminal)."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_every_bracket_in_a_help_text_is_shown(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    checked = 0
    for name, command in typer.main.get_command(app).commands.items():
        shown = _words(cli(name, "--help").stdout)
        texts = [command.help or ""] + [p.help or "" for p in command.params]
        for text in (text.split("\n\n")[0] for text in texts if "[" in text):
            assert _words(text.replace("\\[", "[")) in shown, name
            checked += 1
    assert checked  # there is a bracket to check: --ray's extra


def test_the_ray_option_names_the_extra_to_install(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert "pip install 'trialfuse[ray]'" in _words(cli("run", "--help").stdout)
