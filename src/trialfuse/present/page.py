"""The report's page: HTML sections, the PNG figures they show, and their tables."""
from __future__ import annotations

import html
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no display, no global state

from trialfuse.driver import run_dir
from trialfuse.task import four_places


class Page:
    """The report being built: HTML sections and the PNGs they show."""

    def __init__(self, out: Path):
        self.images = out / run_dir.REPORT_IMAGES
        shutil.rmtree(self.images, ignore_errors=True)
        self.images.mkdir(parents=True)
        self.sections: list[str] = []

    @contextmanager
    def figure(self, name: str, parts: list[str], size=(8, 4)) -> Iterator[Figure]:
        """A figure saved as report_files/<name>.png, with its <img> added to `parts`."""
        fig = Figure(figsize=size)
        yield fig
        fig.tight_layout()
        fig.savefig(self.images / f"{name}.png", dpi=90)
        parts.append(f'<img src="{run_dir.REPORT_IMAGES}/{name}.png" alt="{html.escape(name)}">')

    def section(self, key: str, title: str, parts: list[str]) -> None:
        self.sections.append(f'<section id="{key}"><h2>{html.escape(title)}</h2>\n' + "\n".join(parts) + "</section>")


def table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table (pandas escapes it), floats to four places and None as a blank cell."""
    cells = pd.DataFrame([[fmt(c) for c in row] for row in rows], columns=header, dtype=object)
    return cells.to_html(index=False, border=0)


def fmt(value: Any) -> str:
    """A cell: a float to four places, None or NaN (a family with no score) blank."""
    if isinstance(value, float):
        return "" if math.isnan(value) else four_places(value)
    return "" if value is None else str(value)
