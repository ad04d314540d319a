"""Helpers the tests of every layer import (`from helpers import cli`)."""
from __future__ import annotations

import contextlib
import io
import subprocess

CLI_CODE = "import sys; from trialfuse.cli import main; sys.exit(main(sys.argv[1:]))"


def cli(*args: str) -> subprocess.CompletedProcess:
    """`trialfuse ARGS` through the console entry point, run in this interpreter: its exit
    code, stdout and stderr. The libraries load once per session, so a run costs about 2 s
    less than in a fresh interpreter. Tests of what a fresh process does (the driver never
    imports torch, kill -9, faults injected into the driver) start one with CLI_CODE."""
    from trialfuse.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(["trialfuse", *map(str, args)], code, stdout.getvalue(), stderr.getvalue())


def saved_files(meta: dict) -> list[str]:
    """Every model file a best_model/metadata.json names: a model's one file, or its K fold
    models' (--no-refit), for each member of an ensemble."""
    from trialfuse.engine.saved_model import files

    entries = meta["members"] if meta["family"] == "ensemble" else [meta]
    return [f for entry in entries for f in files(entry)]
