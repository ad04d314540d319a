"""The tour notebook (docs/tour.ipynb) runs end to end on a real Jupyter kernel, so the
documentation cannot drift from what the package does: its cells assert as they go."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a whole run inside a kernel

TOUR = Path(__file__).parents[2] / "docs" / "tour.ipynb"


def test_the_tour_notebook_runs_green(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    notebook = nbformat.read(TOUR, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert (tmp_path / "runs" / "tour" / "results.json").is_file()
    shown = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Model(" in shown and "report.html" in shown
