"""The run directory's files, written so a reader never sees half of one.

Every file goes to a temporary name beside its target and is renamed into place; the
model directory is assembled aside and swapped in whole.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import pandas as pd

from trialfuse.driver.table_files import as_text
from trialfuse.errors import UserError
from trialfuse.testing import faults

RESULTS = "results.json"
BEST_MODEL = "best_model"
METADATA = "metadata.json"
HOLDOUT = "holdout_indices.json"
JOURNAL = "study.journal"
DIAGNOSTICS = "diagnostics.json"
TIMELINE = "timeline.json"
EXPLAIN = "explain.json"
DATA = "data.parquet"  # a table given as a DataFrame, kept as the run's record of what it searched
HOLDOUT_PREDICTIONS = "holdout_predictions.npz"  # the holdout's targets, the saved model's and the prior's predictions
REPORT = "report.html"
REPORT_IMAGES = "report_files"
LIBRARIES = ("trialfuse", "numpy", "scikit-learn", "optuna", "torch", "xgboost", "lightgbm", "catboost")


def write_json(path: Path, payload: Any, fault_point: str | None = None) -> None:
    """Write JSON atomically (temporary file in the same directory, then rename)."""
    write_text(path, json.dumps(payload, indent=2, default=_jsonable) + "\n", fault_point)


def write_text(path: Path, text: str, fault_point: str | None = None) -> None:
    """Write a file atomically (temporary file in the same directory, then rename).
    `fault_point` names the moment between the two for the fault tests (testing.faults)."""
    with _atomic(path, "w", fault_point) as handle:
        handle.write(text)


def write_array(path: Path, array: Any) -> None:
    """Write a NumPy array as .npy atomically."""
    import numpy as np

    with _atomic(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def write_arrays(path: Path, **arrays: Any) -> None:
    """Write named NumPy arrays as one .npz atomically."""
    import numpy as np

    with _atomic(path, "wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)


@contextlib.contextmanager
def _atomic(path: Path, mode: str, fault_point: str | None = None) -> Iterator[IO]:
    """A handle on a temporary file beside `path`, renamed onto it once written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from other users
        if fault_point:
            faults.strike(fault_point)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def read_json(path: Path) -> Any:
    """A run's JSON file; a damaged one (cut short, edited, written over) is the user's one line."""
    with open(path) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is damaged ({exc.msg} at line {exc.lineno}): not the file a run wrote; "
                            "restore it, or rerun into a new --out") from None


def keep_frame(frame, out: Path) -> Path:
    """A DataFrame the run was given, written into the run directory (Parquet keeps its types;
    a column Parquet cannot hold, mixed Python objects or pd.cut's intervals, is kept as the text
    its levels were coded by), so `explain` and a rerun find the table."""
    import pyarrow

    path = out / DATA
    unheld = (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, pyarrow.ArrowNotImplementedError)
    sparse = [name for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.SparseDtype)]
    if sparse:  # pyarrow refuses them with a TypeError: their values as plain columns
        frame = frame.astype({name: frame[name].dtype.subtype for name in sparse})
    try:
        frame.to_parquet(path, index=False)
    except unheld:
        def held(column):
            try:
                column.to_frame().to_parquet(io.BytesIO(), index=False)
                return column
            except unheld:
                return column.astype(object).map(as_text, na_action="ignore").astype("string")
        frame.apply(held).to_parquet(path, index=False)
    return path


def check_out(out: Path) -> None:
    """Refuse, before anything runs, an `--out` a run could not write or should not: a file, a
    folder of other files (a run replaces its best_model/, report_files/ and results.json
    there), or one under a folder it cannot write. An empty folder, or a run's own (its journal or
    holdout written, or the DataFrame it was given), is fine: a rerun continues its search."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()) \
            and not any((out / name).exists() for name in (JOURNAL, HOLDOUT, DATA)):  # a .DS_Store is no one's
        raise UserError(f"--out {out} holds files that are not a trialfuse run's: name a new or empty directory "
                        "(a run's directory continues its search)")
    existing = next(p for p in [out, *out.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(f"--out {out}: cannot write in {existing}{' (a file)' * (not existing.is_dir())}")


def check_file_out(path: Path, table: Path | None = None, run: Path | None = None) -> None:
    """Refuse, before any work, a file to write (`predict --out`) that could not be written, or
    that is the `table` read or lies in the `run` directory (its record and model would be lost)."""
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise UserError(f"--out {path}: {'a directory' if path.is_dir() else f'cannot write in {path.parent}'}; "
                        "name a file in a folder that exists")
    where = path.resolve()
    if table is not None and where == table.resolve():
        raise UserError(f"--out {path} is the table being read; name another file")
    if run is not None:  # a run directory, or a saved model's folder under any name (predict takes either)
        run = run.resolve()
        saved = run / BEST_MODEL if (run / BEST_MODEL / METADATA).exists() else run
        guarded = saved.parent if (saved.parent / RESULTS).exists() else saved
        if where.is_relative_to(guarded):
            raise UserError(f"--out {path} lies in {guarded}, among the run's own files; name a file outside it")


def new_run_dir(parent: Path = Path("runs")) -> Path:
    """A fresh run directory runs/<date>-<time>, with -2, -3, ... for runs started within the
    same second (a cross-validated estimator fits several), created here so no two runs share one."""
    from datetime import datetime

    stem = datetime.now().strftime("%Y%m%d-%H%M%S")
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run directory name under {parent} for {stem}")


@contextlib.contextmanager
def made_unless_refused(out: Path | None) -> Iterator[Path]:
    """The run directory `out` (None: a new runs/<date>-<time>), created here; where the run is
    refused inside (a UserError: another search's fingerprint, a storage it cannot open, another
    driver on the journal), the folders this created are removed again if they are empty, so a
    refused run leaves no empty folder behind. Only empty ones: a second run refused while the
    first writes into the same new folder, or beside it under a new runs/, removes nothing of it."""
    wanted = out or Path("runs")
    made = [p for p in reversed([wanted, *wanted.parents]) if not p.exists()]  # outermost first
    try:
        where = out or new_run_dir()
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create it ({exc.strerror or exc})") from None
    try:
        yield where
    except UserError:
        for folder in ([] if out else [where]) + made[::-1]:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def staging_dir(out: Path) -> Path:
    """A fresh directory in `out` to build the model in before it replaces best_model/."""
    path = out / f".{BEST_MODEL}.{uuid.uuid4().hex}"
    path.mkdir(parents=True)
    return path


def publish_model_dir(staged: Path, out: Path) -> Path:
    """Swap the staged model directory in as best_model/, replacing any older one."""
    target = out / BEST_MODEL
    if target.exists():
        old = out / f".{BEST_MODEL}.old.{uuid.uuid4().hex}"
        os.replace(target, old)
        faults.strike("publish")  # the worst moment to be killed: no best_model/ at all
        os.replace(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        faults.strike("publish")
        os.replace(staged, target)
    return target


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def clear_leftovers(out: Path) -> None:
    """Remove what a killed run left half-done: temporary files and unpublished model directories.
    The old model is put back if the run died between moving it aside and publishing the new one."""
    olds = sorted(out.glob(f".{BEST_MODEL}.old.*"))
    if olds and not (out / BEST_MODEL).exists():
        os.replace(olds.pop(), out / BEST_MODEL)
    for path in [*olds, *out.glob(f".{BEST_MODEL}.*"), *out.glob(".*.tmp")]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def library_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (no library is imported)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
