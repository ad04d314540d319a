"""The winner explained, recorded in the run directory: explain.json (every feature's
importance, partial dependence of the top features, predicted vs actual) and the top
features in best_model/metadata.json. Computed on the sealed holdout after its one score,
so nothing it shows could have steered the search; `trialfuse explain` recomputes it,
on new rows if given."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trialfuse.driver import run_dir
from trialfuse.driver.budget import Budget
from trialfuse.transport.process_pool import WorkerPool

TOP_IN_METADATA = 10
LEAST_SECONDS = 2.0  # left before the report's share, or not started: loading the model and one prediction take that
NOT_EXPLAINED = ("no explanation of the winner", "the winner's explanation failed")  # how its warnings begin


def explain_winner(pool: WorkerPool, out: Path, X: np.ndarray, y: np.ndarray, seed: int,
                   budget: Budget | None, say: Callable[[str], None] = lambda line: None) -> list[str]:
    """Explain the saved best model on the holdout rows in a worker, by the time the report's
    share of the budget begins (`say` hears that it starts); returns warnings (a failure or a
    spent budget costs the run only its explanation, which `trialfuse explain` makes later)."""
    later = f"`trialfuse explain {out}` adds it"
    deadline = budget.report_starts() if budget is not None else None
    if deadline is not None and deadline - time.time() < LEAST_SECONDS:  # its share is spent: nothing to start
        return [f"{NOT_EXPLAINED[0]}: the time budget ran out ({later})"]
    say(f"explaining the winner on the {len(y)} holdout rows")
    try:
        found = pool.explain(out / run_dir.BEST_MODEL, X, y, seed, deadline)
    except TimeoutError as exc:
        return [f"{NOT_EXPLAINED[0]} in the time budget: {exc} ({later})"]
    except Exception as exc:
        return [f"{NOT_EXPLAINED[1]}: {exc}"]
    record(out, found, f"the sealed holdout ({len(y)} rows), after its one score")
    return []


def record(out: Path, found: dict[str, Any], rows_from: str, on_holdout: bool = True) -> None:
    """Write explain.json; on the sealed holdout, also the top features into the saved model's
    metadata (an explanation on other rows says nothing of the model as it was chosen)."""
    run_dir.write_json(out / run_dir.EXPLAIN, {**found, "rows_from": rows_from})
    if not on_holdout:
        return
    meta_path = out / run_dir.BEST_MODEL / run_dir.METADATA
    metadata = run_dir.read_json(meta_path)
    metadata["top_features"] = found["features"][:TOP_IN_METADATA]
    run_dir.write_json(meta_path, metadata)
