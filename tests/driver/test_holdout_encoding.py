"""The sealed holdout does not shape the encoding: category levels and constant columns are
judged on the search rows alone."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from trialfuse.driver.splits import holdout_split
from trialfuse.driver.table import load_table
from trialfuse.survivors import TARGET, make_survivors


def test_levels_and_constant_columns_come_from_the_search_rows(tmp_path):
    X, y, names = make_survivors(300, seed=0)
    frame = pd.DataFrame(X[:, :3], columns=names[:3])
    frame[TARGET] = y
    search, sealed = holdout_split(len(frame), 0.2, 0)
    frame["city"] = "north"
    frame.loc[search[::2], "city"] = "south"
    frame.loc[sealed[:5], "city"] = "only-in-holdout"
    frame["flag"] = 1.0
    frame.loc[sealed[:5], "flag"] = 2.0  # varies only inside the holdout
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)

    table = load_table(path, TARGET, search_rows=lambda task, y: holdout_split(len(y), 0.2, 0, task.strata(y))[0])
    assert table.categories["city"] == ["north", "south"]
    assert np.isnan(table.X[sealed[:5], table.feature_names.index("city")]).all()  # unseen, as at predict time
    assert table.dropped["flag"] == "constant" and "flag" not in table.feature_names
    everything = load_table(path, TARGET)  # judged on every row (the library default)
    assert "only-in-holdout" in everything.categories["city"] and "flag" in everything.feature_names


def test_a_run_encodes_with_the_search_rows_only(tmp_path, run_main):
    X, y, names = make_survivors(300, seed=0)
    frame = pd.DataFrame(X[:, :4], columns=names[:4])
    frame[TARGET] = y
    _, sealed = holdout_split(len(frame), 0.2, 0)
    frame["city"] = np.where(np.arange(len(frame)) % 2, "a", "b")
    frame.loc[sealed[:3], "city"] = "holdout-only"
    frame.to_csv(tmp_path / "t.csv", index=False)
    code, _, err = run_main("run", tmp_path / "t.csv", "--target", TARGET, "--models", "lightgbm", "--trials", "1",
                            "--folds", "2", "--out", tmp_path / "run", "--no-ensemble", "--quiet", "--no-explain")
    assert code == 0, err
    meta = json.loads((tmp_path / "run" / "best_model" / "metadata.json").read_text())
    assert meta["categories"]["city"] == ["a", "b"]
