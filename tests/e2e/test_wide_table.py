"""A wide table under a budget no trial fits: the run's last chance trains on the columns most
related to the target (engine/column_screen.py), and the saved model serves and explains it."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score

from helpers import cli
from trialfuse.driver.last_chance import RESCUE_COLUMNS
from trialfuse.engine.saved_model import SavedModel
from trialfuse.predict import predict_table
from trialfuse.survivors import TARGET, make_survivors

pytestmark = pytest.mark.slow  # whole runs: `pytest -m "not slow"` leaves them out


def test_a_wide_table_with_no_time_for_a_trial_still_saves_a_model_on_its_screened_columns(tmp_path):
    """2,000 columns at --timeout 60s ended with no model: every family's fold took longer than
    the budget. Here the reference table and 240 columns of noise, with a second for the search."""
    X, y, names = make_survivors(600, seed=0)
    noise = np.random.default_rng(0).normal(size=(len(y), 240))
    frame = pd.concat([pd.DataFrame(X, columns=names), pd.DataFrame(noise).add_prefix("noise_")], axis=1)
    frame[TARGET] = y
    frame.to_parquet(tmp_path / "wide.parquet")
    assert frame.shape[1] - 1 > RESCUE_COLUMNS
    proc = cli("run", tmp_path / "wide.parquet", "--target", TARGET, "--models", "lightgbm", "--timeout", "1s",
               "--folds", "4", "--out", tmp_path / "run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert f"was trained on the {RESCUE_COLUMNS} of its {frame.shape[1] - 1} columns most related to the target" \
        in proc.stderr
    meta = json.loads((tmp_path / "run" / "best_model" / "metadata.json").read_text())
    assert meta["params"]["screen"] == RESCUE_COLUMNS
    model_dir = tmp_path / "run" / "best_model"  # each fold model its library's file, and the columns it reads
    assert meta["model_files"] == [f"fold-{k}.txt" for k in range(4)]
    assert all(json.loads((model_dir / f"fold-{k}-columns.json").read_text())["width"] == len(frame.columns) - 1
               for k in range(4))
    served = predict_table(tmp_path / "run", tmp_path / "wide.parquet")["prediction"]
    sealed = json.loads((tmp_path / "run" / "holdout_indices.json").read_text())["holdout_rows"]
    assert r2_score(y[sealed], served.iloc[sealed]) == pytest.approx(meta["holdout_score"], abs=1e-9)
    assert meta["holdout_score"] > 0.05  # better than the mean: the reference table's signal, found among the noise
    explained = cli("explain", tmp_path / "run")
    assert explained.returncode == 0, explained.stderr
    features = json.loads((tmp_path / "run" / "explain.json").read_text())["features"]
    read = set(SavedModel(tmp_path / "run" / "best_model", meta).columns_read().tolist())  # by some fold model
    names = list(frame.columns[:-1])
    assert 0 < len(read) < len(names) and len(features) == len(names)
    assert all(f["permutation_drop"] == 0.0 for f in features if names.index(f["name"]) not in read)
    assert features[0]["permutation_drop"] > 0 and names.index(features[0]["name"]) in read
    is_read = [names.index(f["name"]) in read for f in features]
    assert is_read == sorted(is_read, reverse=True)  # a column no fold model reads: after every read one

