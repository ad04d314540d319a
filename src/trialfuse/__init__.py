"""trialfuse: find the best model for a tabular regression problem without overfitting.

The driver side (this package's top level) never imports torch; training happens in worker
processes. Python API:

    from trialfuse import RunOptions, compare_models
    results = compare_models(RunOptions(data="table.csv", target="score", trials=10))
"""
from __future__ import annotations

from trialfuse.compare import RunOptions, compare_models
from trialfuse.errors import UserError
from trialfuse.predict import predict_table
from trialfuse.survivors import make_survivors, write_survivors

__version__ = "0.1.0"
__all__ = ["RunOptions", "UserError", "compare_models", "make_survivors", "predict_table", "write_survivors"]
