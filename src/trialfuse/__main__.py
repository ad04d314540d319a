"""`python -m trialfuse`: the same command line as the `trialfuse` script."""
from trialfuse.cli import entry

entry()
