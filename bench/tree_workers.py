"""Tree families with several workers against one worker holding every core.

The same seed gives the same trials either way (the scheduler does not depend on the
worker count), so the two runs train the same models: one worker with all the threads,
then N workers with a share each, in one process run.

    python bench/tree_workers.py --rows 10000 --trials 12 --folds 5 [--workers 2] [--save bench/results/X.json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import date
from pathlib import Path

from trialfuse.api import RunOptions, compare_models
from trialfuse.survivors import TARGET, write_survivors

TREES = ["xgboost", "lightgbm", "catboost"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--save", type=Path)
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_survivors(Path(tmp) / "survivors.csv", rows=args.rows, seed=0)
        for workers in (1, args.workers):
            results = compare_models(RunOptions(data=data, target=TARGET, models=TREES, trials=args.trials,
                                                folds=args.folds, out=Path(tmp) / f"w{workers}",
                                                devices=str(workers)))
            runs[workers] = {name: {"seconds": round(f["seconds"], 1), "best_cv_r2": f["cv_score_mean"]}
                             for name, f in results["families"].items()}
    one, many = runs[1], runs[args.workers]
    report = {"date": date.today().isoformat(), "device": f"cpu x {os.cpu_count()}", "rows": args.rows,
              "trials": args.trials, "folds": args.folds, "workers": args.workers,
              "one_worker": one, "many_workers": many,
              "speedup": {name: round(one[name]["seconds"] / many[name]["seconds"], 2) for name in TREES},
              "same_best_cv_r2": all(one[n]["best_cv_r2"] == many[n]["best_cv_r2"] for n in TREES)}
    print(json.dumps(report, indent=2))
    if args.save:
        args.save.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
