from __future__ import annotations

from pathlib import Path

import pytest

from trialfuse.cli import main
from trialfuse.survivors import write_survivors


@pytest.fixture(scope="session")
def survivors_csv(tmp_path_factory) -> Path:
    """A small reference table, the same recipe the demo uses."""
    return write_survivors(tmp_path_factory.mktemp("data") / "survivors.csv", rows=600, seed=0)


@pytest.fixture
def run_main(capsys):
    """Call the CLI in-process; returns (exit code, stdout, stderr)."""
    def call(*args: str):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return call

