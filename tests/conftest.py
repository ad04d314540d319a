from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trialfuse.cli import main
from trialfuse.survivors import write_survivors


@pytest.fixture(scope="session")
def survivors_csv(tmp_path_factory) -> Path:
    """A small reference table, the same recipe the demo uses."""
    return write_survivors(tmp_path_factory.mktemp("data") / "survivors.csv", rows=600, seed=0)


def cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh interpreter, as a user would."""
    code = "import sys; from trialfuse.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=900)


@pytest.fixture
def run_main(capsys):
    """Call the CLI in-process; returns (exit code, stdout, stderr)."""
    def call(*args: str):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return call
