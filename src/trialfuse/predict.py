"""Apply a saved best model (one model, or an ensemble's weighted members) to a new table,
encoding it exactly as training did."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from trialfuse.driver import run_dir
from trialfuse.driver.table import encode_features
from trialfuse.driver.table_files import READ_WARNINGS, as_text, read_frame
from trialfuse.engine.saved_model import SavedModel
from trialfuse.errors import UserError, warn_data
from trialfuse.task import Task, plain_label

CSV_FLOATS = "%.17g"  # every float64 written so that it reads back the same


def predict_table(model_dir: str | Path, data: str | Path | pd.DataFrame,
                  on_warning: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Predictions for every row of `data`, in row order: a `prediction` column (a number, or the
    likeliest class in the target's own values) and, for classes, one `probability_<class>`
    column per class. Category values the model never saw are treated as missing;
    `on_warning` hears how many there were, per column (by default a trialfuse.DataWarning)."""
    model_dir = Path(model_dir)
    if (model_dir / run_dir.BEST_MODEL / run_dir.METADATA).exists():
        model_dir = model_dir / run_dir.BEST_MODEL  # a run directory works too
    meta_path = model_dir / run_dir.METADATA
    if not meta_path.exists():
        raise UserError(f"no saved model in {model_dir} (expected {run_dir.METADATA} there)")
    meta = run_dir.read_json(meta_path)
    _, X = read_as_trained(data, meta, on_warning or warn_data)
    model = SavedModel(model_dir, meta)
    return prediction_frame(model.task, model.predict(X))


def prediction_frame(task: Task, predicted: np.ndarray) -> pd.DataFrame:
    """What `trialfuse predict` writes for a model's output: the prediction, and each class's
    probability where there are classes (labels keep their type: text stays text)."""
    frame = pd.DataFrame({"prediction": pd.Series(task.labels(predicted)).infer_objects()})
    for k, label in enumerate(task.classes):
        frame[f"probability_{as_text(label)}"] = predicted[:, k]
    return frame


def read_as_trained(data: str | Path | pd.DataFrame, meta: dict, on_warning: Callable[[str], None] | None = None):
    """(the table, its features encoded as the saved model's training table was): category
    columns read as text, unseen values missing and counted to `on_warning`."""
    categories = meta.get("categories", {})
    used = set(meta["feature_names"]) | set(meta.get("dates", []))  # other columns may hold anything
    frame, _ = read_frame(data, meta["target"], text_columns=list(categories), only=used,
                          date_columns=meta.get("dates", []))
    if len(frame) == 0:
        raise UserError(f"table {'(the DataFrame)' if isinstance(data, pd.DataFrame) else data} has no rows")
    unseen: dict[str, int] = {}
    X = encode_features(frame, meta["feature_names"], categories, unseen, meta.get("dates", []))
    why = {**{name: "not seen in training" for name in categories},
           **{name: "not read as dates" for name in meta.get("dates", [])}}
    said = frame.attrs.get(READ_WARNINGS, []) + [
        f"column {name!r}: {count} value(s) {why.get(name, 'infinite')}, treated as missing"
        for name, count in unseen.items()]
    for line in said:
        if on_warning:
            on_warning(line)
    return frame, X


def check_table_out(path: str | Path) -> None:
    """Refuse (one line) an --out that predictions cannot be written as, before anything is predicted:
    a .npz (a table format we read, not one we write)."""
    if Path(path).suffix.lower() == ".npz":
        raise UserError(f"--out {path}: predictions are written as CSV, Parquet or JSON; name a .csv, .parquet, "
                        ".json or .jsonl file")


def write_table(frame: pd.DataFrame, path: str | Path | None) -> None:
    """Predictions written in the format the path's suffix names, as tables are read (Parquet,
    JSON records, JSON lines; every float exact, as CSV's 17 digits), else CSV (None: CSV to
    stdout): `--out p.parquet` had written CSV text under that name. The path was checked
    (`check_table_out`) before predicting."""
    if path is None:
        frame.to_csv(sys.stdout, index=False, float_format=CSV_FLOATS)
        return
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            frame.to_parquet(path, index=False)
        except (ValueError, TypeError, ImportError) as exc:  # pyarrow's ArrowInvalid: classes of mixed types
            raise UserError(f"--out {path}: cannot write these predictions as Parquet ({str(exc).splitlines()[0]}); "
                            "name a .csv file") from None
    elif suffix in (".json", ".jsonl"):
        records = [{k: plain_label(v) for k, v in row.items()}
                   for row in frame.to_dict(orient="records")]  # Python floats: json writes the shortest exact form
        text = "\n".join(map(json.dumps, records)) + "\n" if suffix == ".jsonl" else json.dumps(records)
        path.write_text(text)
    else:
        frame.to_csv(path, index=False, float_format=CSV_FLOATS)
