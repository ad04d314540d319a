"""What pruning across folds saves on the reference table, and what it costs in holdout R².

Runs the same compare-models search twice in one process, with `--no-prune` and with
pruning (same seed, data, trials), and prints per family the wall time, the folds trained
(from the run's timeline) and the best CV R², plus the holdout R² of each run's winner.

    python bench/pruning.py --rows 10000 --trials 24 --folds 5 [--models ...] [--save bench/results/X.json]
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


def one_run(data: Path, out: Path, args: argparse.Namespace, prune: bool) -> dict:
    results = compare_models(RunOptions(data=data, target=TARGET, models=args.models.split(","), trials=args.trials,
                                        folds=args.folds, out=out, seed=args.seed, prune=prune))
    tasks = json.loads((out / "timeline.json").read_text())["tasks"]
    families = {
        name: {"seconds": round(f["seconds"], 1), "complete": f["trials_complete"], "pruned": f["trials_pruned"],
               "folds_trained": sum(t["jobs"] for t in tasks if t["what"] == name),
               "best_cv_r2": round(f["cv_score_mean"], 4)}
        for name, f in results["families"].items()}
    return {"seconds": round(results["seconds"], 1), "winner": results["winner"],
            "holdout_score": round(results["holdout_score"], 4), "families": families}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="xgboost,lightgbm,catboost,nn")
    ap.add_argument("--save", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_survivors(Path(tmp) / "survivors.csv", rows=args.rows, seed=0)
        without = one_run(data, Path(tmp) / "no-prune", args, prune=False)
        with_pruning = one_run(data, Path(tmp) / "prune", args, prune=True)
    report = {"date": date.today().isoformat(), "device": f"cpu x {os.cpu_count()}", "rows": args.rows,
              "trials": args.trials, "folds": args.folds, "no_prune": without, "prune": with_pruning,
              "time_saved_fraction": round(1 - with_pruning["seconds"] / without["seconds"], 3),
              "holdout_score_change": round(with_pruning["holdout_score"] - without["holdout_score"], 4)}
    print(json.dumps(report, indent=2))
    if args.save:
        args.save.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
