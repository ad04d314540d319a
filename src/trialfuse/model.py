"""The Python API for notebooks and scripts: `fit` a table into a `Model`, `load` one back.

    import trialfuse
    model = trialfuse.fit(frame, "price", timeout="60s")     # a DataFrame, a path, or X with y=
    model.leaderboard(); model.predict(new_rows); model.explain()
    model = trialfuse.load("runs/20261205-101500")            # in a fresh process, from disk alone

`fit` is `trialfuse run`: the same options with the same defaults and checks (bad input is
one `UserError` with the CLI's line, raised before anything trains), the same run directory
(said where, before training) and report; progress shows as in a terminal (rich renders in
Jupyter) unless `quiet=True`. A `Model` reads its run directory only: `predict` gives what
`trialfuse predict` gives. Driver side: no torch here (the saved models load it themselves
where a member is the NN).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trialfuse.catalog import params_from_trial
from trialfuse.driver import run_dir
from trialfuse.driver.options import RunOptions
from trialfuse.driver.run_record import RunRecord, cv_of
from trialfuse.driver.trial_records import trial_train_seconds
from trialfuse.errors import UserError
from trialfuse.predict import predict_table

OPTIONS = [f.name for f in dataclasses.fields(RunOptions) if f.name not in ("data", "target")]
ARRAY_TARGET = "y"  # the target's name when the table is given as X and y
STANDING = {"COMPLETE": 0, "PRUNED": 1}  # the leaderboard's order of trial states; the rest after


def fit(data: pd.DataFrame | str | Path | np.ndarray, target: str | None = None, *, y=None, quiet: bool = False,
        report: bool = True, **options: Any) -> Model:
    """Search every family on `data` for `target`, save the winner, score the holdout once, as
    `trialfuse run` does; the options are its own (`trials=10`, `timeout="60s"`, `models=[...]`,
    `task="binary"`, `out="runs/x"`, ...). `data` is a DataFrame, a table file, or X (an array or
    DataFrame of features) with `y=`. `report=False` leaves report.html out (`trialfuse report
    RUN_DIR` writes it later): a cross-validated estimator fits many runs."""
    from trialfuse.api import search_and_report

    unknown = [name for name in options if name not in OPTIONS]
    if unknown:
        raise UserError(f"unknown option {unknown[0]!r} (the options are {', '.join(OPTIONS)})")
    frame_or_path, target = _table(data, target, y)
    opts = RunOptions(data=frame_or_path, target=target, **options)
    if quiet:
        return Model(search_and_report(opts, report=report).out)
    from trialfuse.present.progress import RichReporter, show_summary

    with RichReporter() as reporter:
        record = search_and_report(opts, reporter, report=report)
    show_summary(reporter.console, record)
    return Model(record.out)


def _model_params(family: str, trial) -> dict[str, Any]:
    """A trial's params as its model takes them and results.json names them (the NN's `hidden_layers`,
    not Optuna's `n_layers`, `width_0`, ...); as Optuna holds them where they do not rebuild (a
    trial still being asked)."""
    try:
        return params_from_trial(family, trial)
    except (KeyError, ValueError):
        return dict(trial.params)


def _table(data, target: str | None, y) -> tuple[pd.DataFrame | Path, str | None]:
    """What the run reads: a DataFrame or a path, and the target's name."""
    if y is not None:  # X and y: one table, the target named `target`, y's own name, or "y"
        features = as_features(data)
        name = getattr(y, "name", None)
        target = target or (name if isinstance(name, str) else free_name(ARRAY_TARGET, features.columns))
        values = np.asarray(y)
        if values.ndim != 1 or len(values) != len(features):
            raise UserError(f"y must hold one value per row of X: got {values.shape} for {len(features)} rows")
        if target in features.columns:
            raise UserError(f"target name {target!r} is also a feature column of X")
        return features.assign(**{target: values}), target
    if isinstance(data, pd.DataFrame):
        check_columns(data, "the DataFrame")
        if data.empty:
            raise UserError("the DataFrame has no rows" if len(data.columns) else "the DataFrame is empty")
        return data, target
    if isinstance(data, str | Path):
        return Path(data), target
    raise UserError(f"data must be a DataFrame, a table file's path, or X with y=; got {type(data).__name__}")


def free_name(name: str, columns) -> str:
    """`name`, or name_2, name_3, ... where the features already have a column of that name."""
    taken = set(map(str, columns))
    return next(c for c in itertools.chain([name], (f"{name}_{n}" for n in itertools.count(2))) if c not in taken)


def as_features(X) -> pd.DataFrame:
    """X as the feature columns of a table: a DataFrame as it is (its rows renumbered), an
    array's columns named x0, x1, ..."""
    if isinstance(X, pd.DataFrame):
        frame = X.reset_index(drop=True)
    else:
        if hasattr(X, "toarray"):  # a SciPy sparse matrix (a OneHotEncoder's output): its dense values
            X = X.toarray()
        try:
            values = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise UserError(f"X must be a table of features: {exc}") from None
        if values.ndim != 2:
            raise UserError(f"X must be 2-D (rows x features), got shape {values.shape}")
        frame = pd.DataFrame(values, columns=[f"x{i}" for i in range(values.shape[1])])
    check_columns(frame, "X")
    if frame.shape[1] == 0:  # scikit-learn's words for it
        raise UserError(f"X has 0 feature(s) (shape={frame.shape}) while a minimum of 1 is required.")
    complex_columns = [name for name, dtype in frame.dtypes.items() if pd.api.types.is_complex_dtype(dtype)]
    if complex_columns:  # scikit-learn's words first (its estimator checks read them), then the table's
        raise UserError(f"Complex data not supported: column {complex_columns[0]!r} holds complex numbers; give its "
                        "real and imaginary parts as two columns")
    return frame


def check_columns(frame: pd.DataFrame, what: str) -> None:
    """Refuse columns of several levels (a pivot's or a groupby's ('a', 'b')) before training: a
    table file has one row of names, and the saved model could not find them again at predict."""
    if isinstance(frame.columns, pd.MultiIndex):
        raise UserError(f"{what} has columns of {frame.columns.nlevels} levels, e.g. {frame.columns[0]!r}: give "
                        "each column one name (e.g. frame.columns = ['_'.join(map(str, c)) for c in frame.columns])")


def load(run: str | Path) -> Model:
    """The model of a finished run directory (or its best_model/), read from disk alone."""
    return Model(run)


class Model:
    """A finished run: its saved model, its record and its report."""

    def __init__(self, run: str | Path):
        run = Path(run).resolve()  # a notebook's working directory changes; a pickled estimator travels
        if run.name == run_dir.BEST_MODEL:
            run = run.parent
        if not (run / run_dir.RESULTS).is_file() or not (run / run_dir.BEST_MODEL / run_dir.METADATA).is_file():
            raise UserError(f"{run} is not a finished run directory (no {run_dir.RESULTS} and saved model)")
        self.run_dir = run
        self.record = RunRecord.read(run)
        self.task = self.record.task

    def __repr__(self) -> str:
        return (f"Model({str(self.run_dir)!r}: {self.task.kind} of {self.record.target!r}, "
                f"winner {self.record.winner}, holdout {self.task.metric.label} "
                f"{self.task.show(self.record.holdout_score)})")

    @property
    def results(self) -> dict[str, Any]:
        """results.json, as `compare_models` returns it."""
        return self.record.to_json()

    @property
    def report_path(self) -> Path:
        return self.run_dir / run_dir.REPORT

    def predict(self, data: pd.DataFrame | str | Path | np.ndarray) -> np.ndarray:
        """One prediction per row, in row order: a number, or the likeliest class in the
        target's own values (what `trialfuse predict` writes as `prediction`)."""
        return self._predicted(data)["prediction"].to_numpy()

    def predict_proba(self, data: pd.DataFrame | str | Path | np.ndarray) -> pd.DataFrame:
        """Each class's probability per row, one column per class (named by the class)."""
        if not self.task.is_classification:
            raise UserError(f"predict_proba is for classes; this model predicts numbers ({self.record.target!r})")
        predicted = self._predicted(data)
        return pd.DataFrame({c: predicted.iloc[:, 1 + k].to_numpy() for k, c in enumerate(self.task.classes)},
                            index=predicted.index)  # the probability columns follow `prediction`, in class order

    def _predicted(self, data) -> pd.DataFrame:
        if not isinstance(data, str | Path | pd.DataFrame) and not self._fit_on_an_array:
            raise UserError("the model was fit on named columns (a file or a DataFrame): give predict a DataFrame "
                            "with them, not an array (its columns would be x0, x1, ...)")
        frame = Path(data) if isinstance(data, str | Path) else self._by_position(data) \
            if isinstance(data, pd.DataFrame) else as_features(data)  # an array: x0, x1, ... as fit named them
        predicted = predict_table(self.run_dir, frame)
        if isinstance(data, pd.DataFrame):
            predicted.index = data.index
        return predicted

    def _by_position(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame`, its columns named x0, x1, ... where pandas numbered them (`pd.DataFrame(X)`) and
        the model was fit on an array (`fit(X, y=)` named its columns so); else as it is."""
        numbered = list(frame.columns) == list(range(frame.shape[1]))
        if numbered and self._fit_on_an_array:
            return frame.set_axis([f"x{i}" for i in range(frame.shape[1])], axis=1)
        return frame

    @functools.cached_property
    def _fit_on_an_array(self) -> bool:
        """Whether the saved model's features are the x0, x1, ... that `fit(X, y=)` names an array's
        columns (read once: every predict asks)."""
        trained = run_dir.read_json(self.run_dir / run_dir.BEST_MODEL / run_dir.METADATA)["feature_names"]
        return all(re.fullmatch(r"x\d+", name) for name in trained)

    def leaderboard(self) -> pd.DataFrame:
        """Every trial of every family, best first, after a saved ensemble (the saved model; its
        inner out-of-fold predictions scored fold by fold, as a trial is; its members' weights as
        params): CV score mean and spread over the folds (as people read the metric), the holdout
        score where one was measured, seconds, state, params. Finished trials rank above pruned
        ones (scored on the folds they reached, which can beat any full mean) and those above
        failed ones."""
        shown = self.task.metric.shown
        holdout = self.record.holdout_scores()
        rows = []
        for family, trials in self.record.trials(self.run_dir).items():
            best = self.record.families[family].best_trial
            for t in trials:
                if t.state.name == "WAITING":  # queued (a portfolio start) and never trained: no row
                    continue
                folds = [shown(s) for s in t.user_attrs.get("cv_score_folds", [])]
                rows.append({"family": family, "trial": t.number, "state": t.state.name.lower(),
                             "cv_score_mean": shown(t.value) if t.value is not None else np.nan,
                             "cv_score_sd": float(np.std(folds)) if len(folds) > 1 else np.nan,  # one fold: none
                             "holdout_score": holdout.get(family, np.nan) if t.number == best else np.nan,
                             "seconds": trial_train_seconds(t) if "cv_score_folds" in t.user_attrs else np.nan,
                             "params": _model_params(family, t),  # seconds: none where no fold came back (cut)
                             "_order": t.value if t.value is not None else -np.inf,
                             "_standing": STANDING.get(t.state.name, len(STANDING))})
        ensemble = self.record.ensemble
        if ensemble and ensemble.get("chosen"):  # the saved ensemble, chosen on out-of-fold predictions
            mean, spread, _ = cv_of(ensemble)  # its folds' mean, as the trials' rows read
            rows.append({"family": "ensemble", "trial": None, "state": "saved", "cv_score_mean": shown(mean),
                         "cv_score_sd": spread, "holdout_score": self.record.holdout_score,
                "seconds": np.nan, "params": {f"{m['family']}-{m['trial']}": m["weight"] for m in ensemble["members"]},
                "_order": np.inf, "_standing": -1})  # the saved model first: its score is an inner K-fold's
        board = pd.DataFrame(rows, columns=["family", "trial", "state", "cv_score_mean", "cv_score_sd",
                                            "holdout_score", "seconds", "params", "_order", "_standing"])
        board["holdout_score"] = board["holdout_score"].map(lambda s: shown(s) if pd.notna(s) else np.nan)
        board["trial"] = board["trial"].astype("Int64")  # a whole number, missing on the ensemble's row
        board = board.sort_values(["_standing", "_order"], ascending=[True, False], kind="stable")
        board = board.drop(columns=["_order", "_standing"])
        return board.reset_index(drop=True).rename(columns={
            "cv_score_mean": f"cv_{self.task.metric_name}_mean", "cv_score_sd": f"cv_{self.task.metric_name}_sd",
            "holdout_score": f"holdout_{self.task.metric_name}"})

    def explain(self, data: pd.DataFrame | str | Path | None = None,
                seconds: float | None = None) -> dict[str, pd.DataFrame]:
        """The winner explained (as `trialfuse explain`, within `seconds`, 120 by default): on the run's
        sealed holdout, or on `data` (rows with the target). DataFrames: `importance` (per feature, the
        drop in the search metric when shuffled and the mean |SHAP| where the members are trees; where
        there is none, `importance.attrs["shap_none"]` says why) and `partial_dependence` (the top
        features' average prediction over a grid)."""
        from trialfuse.explain import LIMIT_SECONDS, explain_run

        explain_run(self.run_dir, data, limit=LIMIT_SECONDS if seconds is None else seconds)
        found = run_dir.read_json(self.run_dir / run_dir.EXPLAIN)
        importance = pd.DataFrame(found["features"])
        importance.attrs["shap_none"] = found.get("shap_none")  # a Poisson member's, a class stack's, no time
        curves = pd.DataFrame([{"feature": c["feature"], "value": v, "average": a}
                               for c in found["partial_dependence"] for v, a in zip(c["grid"], c["average"],
                                                                                    strict=True)])
        return {"importance": importance, "partial_dependence": curves}
