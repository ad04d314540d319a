"""Helpers the tests of every layer import (`from helpers import cli`)."""
from __future__ import annotations

import subprocess
import sys

CLI_CODE = "import sys; from trialfuse.cli import main; sys.exit(main(sys.argv[1:]))"


def cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real console entry point in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-c", CLI_CODE, *map(str, args)], capture_output=True, text=True,
                          timeout=900)


def saved_files(meta: dict) -> list[str]:
    """Every model file a best_model/metadata.json names: a model's one file, or its K fold
    models' (--no-refit), for each member of an ensemble."""
    from trialfuse.engine.saved_model import files

    entries = meta["members"] if meta["family"] == "ensemble" else [meta]
    return [f for entry in entries for f in files(entry)]
