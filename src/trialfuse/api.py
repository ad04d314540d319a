"""The Python API: the CLI's powers as functions. Driver-side only (no torch); the fused
NN trainer, `trialfuse.train_many`, loads from the engine on first use.

    from trialfuse import RunOptions, compare_models, predict_table
    results = compare_models(RunOptions(data="table.csv", target="score", trials=10))
"""
from __future__ import annotations

from trialfuse.driver.options import RunOptions
from trialfuse.driver.run import compare_models
from trialfuse.errors import UserError
from trialfuse.fuse import Fuse
from trialfuse.predict import predict_table
from trialfuse.survivors import make_survivors, write_survivors

__all__ = ["Fuse", "RunOptions", "UserError", "compare_models", "make_survivors", "predict_table", "write_survivors"]
