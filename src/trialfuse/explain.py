"""`trialfuse explain RUN_DIR [--table rows.csv]`: the winner's explanation again, on the
run's sealed holdout or on new rows that carry the target, and the report rebuilt with it."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from trialfuse.driver import run_dir
from trialfuse.driver.data_checks import row_keys
from trialfuse.driver.explanation import NOT_EXPLAINED, record
from trialfuse.driver.run_record import RunRecord
from trialfuse.engine.importance import OutOfTime, explain
from trialfuse.engine.saved_model import SavedModel
from trialfuse.errors import RunFailed, UserError, warn_data
from trialfuse.predict import read_as_trained
from trialfuse.present.report import build_report
from trialfuse.task import Task, plain_label

LIMIT_SECONDS = 120.0  # the most `trialfuse explain` takes by default: 8,000 columns' least took about an hour


def explain_run(out: str | Path, table: str | Path | pd.DataFrame | None = None,
                on_warning: Callable[[str], None] = warn_data, limit: float | None = LIMIT_SECONDS) -> Path:
    """Write explain.json for the run in `out` and rebuild its report; returns the report's path.
    `table`: rows with the target to explain on (a file or a DataFrame; `on_warning` hears what
    predict would say of them); None: the sealed holdout. Within `limit` seconds (None: no limit):
    parts that do not fit are left out, and RunFailed where not even the least explanation fits."""
    out = Path(out)
    if limit is not None and not limit > 0:
        raise UserError(f"the explanation's time limit (--seconds) must be more than 0, got {limit:g}")
    if not (out / run_dir.RESULTS).is_file():
        raise UserError(f"{out} is not a finished run directory (no {run_dir.RESULTS})")
    results = RunRecord.read(out)
    model_dir = out / run_dir.BEST_MODEL
    metadata = run_dir.read_json(model_dir / run_dir.METADATA)
    given = table is not None
    source = table if isinstance(table, pd.DataFrame) else Path(table) if given else results.data_at(out)
    if isinstance(source, Path) and not source.exists():
        raise UserError(f"the run's table {source} is not there (moved?): give it with --table")
    said: list[str] = []  # what predict would say of the rows: after the refusal below, if any, or not at all
    frame, X = read_as_trained(source, metadata, said.append if given else None)
    source = "the DataFrame" if isinstance(source, pd.DataFrame) else source
    if metadata["target"] not in frame.columns:
        raise UserError(f"{source} has no column {metadata['target']!r}: the explanation scores predictions "
                        "against it")
    for line in said:
        on_warning(line)
    task = Task.from_json(metadata.get("task"))
    y = task.encode(frame[metadata["target"]])
    if given:
        rows = np.flatnonzero(np.isfinite(y))
        if unknown := _unknown_targets(task, frame[metadata["target"]], y):  # left out: said, not silently
            if len(rows) < 2:
                raise UserError(f"{source}: {unknown}, and fewer than 2 rows are left to explain on")
            on_warning(f"{source}: {unknown}; those rows are left out")
        seen = _trained_on(out, results, metadata, X[rows])
        rows_from = f"{source} ({len(rows)} rows" + (f"; {seen} of them the model was trained on, where its "
                                                     "scores read high)" if seen else ")")
    else:
        rows = np.asarray(run_dir.read_json(out / run_dir.HOLDOUT)["holdout_rows"])
        rows_from = f"the sealed holdout ({len(rows)} rows), after its one score"
    if len(rows) < 2:
        raise UserError(f"{source} has fewer than 2 rows with a target value to explain on")
    try:
        found = explain(SavedModel(model_dir, metadata), X[rows], y[rows], metadata["feature_names"], results.seed,
                        limit=limit)
    except OutOfTime as exc:
        wait = f"about {math.ceil(exc.needs * 1.2)} s" if exc.needs else "a longer one"
        raise RunFailed(f"no explanation within {limit:g} s: {exc}; a limit of {wait} (--seconds, or "
                        "seconds= in Python) waits for it") from None
    record(out, found, rows_from, on_holdout=not given)
    if not given and any(w.startswith(NOT_EXPLAINED) for w in results.warnings):  # the run's own, mended now
        results.warnings = [w for w in results.warnings if not w.startswith(NOT_EXPLAINED)]
        results.write(out)
    return build_report(out)


def _unknown_targets(task: Task, target: pd.Series, y: np.ndarray) -> str:
    """What is wrong with the target values the model cannot score (a label that is none of its
    classes, text where it predicts numbers), as part of a line; "" where there are none."""
    unknown = target.notna().to_numpy() & ~np.isfinite(y)
    if not unknown.any():
        return ""
    values = pd.unique(target[unknown])
    shown = ", ".join(repr(plain_label(v)) for v in values[:3]) + (", ..." if len(values) > 3 else "")
    if task.is_classification:
        known = ", ".join(repr(plain_label(c)) for c in task.classes[:6]) + (", ..." if len(task.classes) > 6 else "")
        return f"{unknown.sum()} row(s) have a target that is no class of this model ({shown}; its classes: {known})"
    return f"{unknown.sum()} row(s) have a target that is not a number ({shown})"


def _trained_on(out: Path, results: RunRecord, metadata: dict, X: np.ndarray) -> int:
    """How many rows of `X` are the run's search rows (equal in every feature): a table given to
    explain on may be the run's own, where the model was trained on most rows."""
    source = results.data_at(out)
    if not source.exists():
        return 0
    _, X_run = read_as_trained(source, metadata)
    sealed = run_dir.read_json(out / run_dir.HOLDOUT)["holdout_rows"]
    return int(np.isin(row_keys(X), row_keys(np.delete(X_run, sealed, axis=0))).sum())
