"""`python -m trialfuse`: the same command line as the `trialfuse` script."""
import sys

from trialfuse.cli import main

sys.exit(main())
