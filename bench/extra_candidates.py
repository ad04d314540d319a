"""What one more model would add to a finished run's ensemble, without running the search
again: the run's kept candidates (their out-of-fold predictions, and on the holdout the mean of
their K kept fold models, as they are served) plus a model of the given family and params fit
here on the run's own folds, then the run's selection over both (the Caruana average started
from the best single model, its inner out-of-fold score, and the stack): out-of-fold and
holdout scores before and after. Only a screen: the search would have spent the new model's
time on something else, so a start that passes it is then measured by real runs. With `--folds
K` each added model is fit on K folds of the same search rows instead (its own scores only: its
out-of-fold rows are not the run's, so no ensemble is made with it).

    python bench/extra_candidates.py RUN_DIR [RUN_DIR ...] \\
        --add 'lightgbm:{"learning_rate": 0.05, "extra_trees": true, ...}' --save out.json
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import numpy as np

from trialfuse.blend import serve
from trialfuse.driver import ensemble, stack
from trialfuse.driver.out_of_fold import OutOfFold
from trialfuse.driver.splits import holdout_split, kfold_indices
from trialfuse.engine.families import family_module
from trialfuse.engine.saved_model import Member
from trialfuse.predict import read_as_trained
from trialfuse.task import Task


class Run:
    """A finished run's rows, folds and kept candidates (out-of-fold and served on the holdout)."""

    def __init__(self, directory: Path):
        results = json.loads((directory / "results.json").read_text())
        meta = json.loads((directory / "best_model" / "metadata.json").read_text())
        frame, X = read_as_trained(results["data"], meta)
        self.task = task = Task.from_json(meta["task"])
        y = task.encode(frame[meta["target"]])
        fraction = json.loads((directory / "holdout_indices.json").read_text())["fraction"]
        rest, sealed = holdout_split(len(y), fraction, results["seed"], task.strata(y))
        self.seed = results["seed"]
        self.folds = kfold_indices(len(rest), results["folds"], self.seed, task.strata(y[rest]))
        self.categorical = [meta["feature_names"].index(c) for c in meta.get("categories", {})]
        self.X, self.y, self.X_holdout, self.y_holdout = X[rest], y[rest], X[sealed], y[sealed]
        leader = results["ranking"][0]  # the search's winner: where the run's average starts
        self.winner = f"{leader}-{results['families'][leader]['best_trial']}"
        self.names, self.families, self.oof, self.holdout = [], [], [], []
        kept = OutOfFold(directory, self.folds)  # the run's own reading of its kept trials, in its order
        for family, number, vector in kept.vectors():
            files = kept.fold_files(family, number)
            if files:  # served as the run serves it: its K fold models' mean
                served = Member(family, [family_module(family).load(f) for f in files], 1.0, task)
                self.add(f"{family}-{number}", family, vector, served.predict(self.X_holdout))

    def add(self, name: str, family: str, oof: np.ndarray, holdout: np.ndarray) -> None:
        self.names.append(name)
        self.families.append(family)
        self.oof.append(oof)
        self.holdout.append(holdout)

    def fit(self, family: str, params: dict, folds: list | None = None) -> dict:
        """The model on the run's folds, kept as one more candidate (on `folds`: not kept); its own
        scores and seconds."""
        module, task, started, oof, holdout = family_module(family), self.task, time.perf_counter(), None, []
        for train, val in folds or self.folds:
            fitted = module.fit(params, self.X[train], self.y[train], self.X[val], self.y[val], seed=0, threads=2,
                                task=task, categorical=self.categorical)
            predicted = task.probabilities(module.predict(fitted.model, self.X[val]))
            oof = np.zeros((len(self.y), *predicted.shape[1:])) if oof is None else oof
            oof[val] = predicted
            holdout.append(task.probabilities(module.predict(fitted.model, self.X_holdout)))
        served = np.mean(holdout, axis=0)
        if folds is None:
            self.add(f"{family}+{len(self.names)}", family, oof, served)
        return {"family": family, "params": params, "folds": len(folds or self.folds),
                "oof_score": task.score(self.y, oof), "holdout_score": task.score(self.y_holdout, served),
                "seconds": round(time.perf_counter() - started, 1)}

    def ensembles(self) -> dict:
        """The run's selection over the candidates now kept, scored as the run scores it."""
        task, oof, holdout = self.task, np.array(self.oof), np.array(self.holdout)
        scores = [task.score(self.y, p) for p in oof]
        first = self.names.index(self.winner)
        chosen = ensemble.select(oof, self.y, first=first, task=task)
        inner = ensemble.inner_scores(oof, self.y, self.folds, task=task)
        reads = [stack.inputs(p.scores, self.families, p.members, p.first) for p in inner.picks]
        stacked = stack.fit(oof, self.y, self.folds, task, read=stack.inputs(scores, self.families, chosen.members,
                                                                             first), reads=reads)
        return {"best_single": self.names[first], "best_single_oof": scores[first],
                "best_single_holdout": task.score(self.y_holdout, holdout[first]),
                "average_inner_oof": inner.average,
                "average_holdout": task.score(self.y_holdout, np.tensordot(chosen.weights, holdout, 1)),
                "stack_inner_oof": stacked.oof_score,
                "stack_holdout": task.score(self.y_holdout, serve(list(holdout[stacked.inputs]), stacked.weights,
                                                                  stacked.served)),
                "weights": {self.names[i]: float(chosen.weights[i]) for i in chosen.members}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--add", action="append", required=True, help="family:JSON params, once per model")
    parser.add_argument("--folds", type=int, help="fit each added model on K folds of its own (no ensemble)")
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    rows = []
    for directory in args.runs:
        run = Run(directory)
        row = {"run": str(directory), "before": run.ensembles(), "added": []}
        print(directory, json.dumps(row["before"]), flush=True)
        folds = None if args.folds is None else kfold_indices(len(run.y), args.folds, run.seed, run.task.strata(run.y))
        for spec in args.add:
            family, params = spec.split(":", 1)
            fitted = run.fit(family, json.loads(params), folds)
            row["added"].append({**fitted, **({"after": run.ensembles()} if folds is None else {})})
            print(" +", json.dumps(row["added"][-1]), flush=True)
        rows.append(row)
    if args.save:
        args.save.write_text(json.dumps({"date": date.today().isoformat(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
