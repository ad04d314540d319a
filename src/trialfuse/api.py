"""The Python API: the CLI's powers as functions. Driver-side only (no torch); the fused
NN trainer, `trialfuse.train_many`, loads from the engine on first use.

    from trialfuse import RunOptions, compare_models, predict_table
    results = compare_models(RunOptions(data="table.csv", target="score", trials=10))
"""
from __future__ import annotations

from typing import Any

from trialfuse.driver import run
from trialfuse.driver.options import RunOptions
from trialfuse.driver.run_record import RunRecord
from trialfuse.errors import UserError
from trialfuse.fuse import Fuse
from trialfuse.predict import predict_table
from trialfuse.present.report import write_report
from trialfuse.survivors import make_survivors, write_survivors

__all__ = ["Fuse", "RunOptions", "UserError", "compare_models", "make_survivors", "predict_table", "write_survivors"]


def compare_models(opts: RunOptions, reporter: run.Reporter | None = None) -> dict[str, Any]:
    """Search, compare and save the winner, as `trialfuse run` does, report.html included:
    the results (results.json). `reporter` hears the progress (see driver.run.Reporter)."""
    return search_and_report(opts, reporter).to_json()


def search_and_report(opts: RunOptions, reporter: run.Reporter | None = None, report: bool = True) -> RunRecord:
    """`compare_models`, the run's record as a type (the CLI's summary reads it); `report=False`:
    without report.html."""
    record = run.compare_models(opts, reporter)
    if not report:
        return record
    line = write_report(record.out)
    if reporter is not None and not line.startswith("report: "):  # where it is: the summary says (once)
        reporter.stage(line)
    return record

