from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli
from trialfuse.cli import main
from trialfuse.survivors import write_survivors

EXPLAINED = ("lightgbm", "nn")  # the families whose shared run explains its winner (a tree, the network)


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



@pytest.fixture(scope="session")
def full_run(survivors_csv, tmp_path_factory):
    """All default families, 3 trials each (the fewest the report ranks parameters on),
    3 folds, as a user runs it (progress on, no --json), with the driver checked for
    torch: (run directory, finished process). Made once and shared read-only; a test that
    changes it works on a copy."""
    out = tmp_path_factory.mktemp("full-run") / "out"
    code = ("import sys; from trialfuse.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules, 'the driver imported torch'; sys.exit(rc)")
    args = ["run", survivors_csv, "--target", "score", "--trials", "3", "--folds", "3", "--out", out]
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="session")
def family_run(survivors_csv, tmp_path_factory):
    """`family_run(name)`: the smallest real run of one family through the console entry
    point (1 trial, 2 folds, --quiet; the winner explained for EXPLAINED families only, the
    others --no-explain): (run directory, finished process). Each is made once per session
    and shared read-only; a test that changes one works on a copy."""
    made: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}

    def run(family: str) -> tuple[Path, subprocess.CompletedProcess]:
        if family not in made:
            out = tmp_path_factory.mktemp(f"run-{family}") / "run"
            proc = cli("run", survivors_csv, "--target", "score", "--models", family, "--trials", "1", "--folds", "2",
                       "--out", out, "--quiet", *(() if family in EXPLAINED else ("--no-explain",)))
            assert proc.returncode == 0, proc.stderr
            made[family] = out, proc
        return made[family]
    return run
