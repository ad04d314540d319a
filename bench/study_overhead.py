"""How much a whole NN study costs beyond the training itself, and what the old way cost.

Runs in one process, on the reference table:
1. trialfuse's NN study (persistent workers, dataset loaded once): wall time of the study
   against the workers' own training time (sum of per-fold durations / workers);
2. the source system's way for the same trials' params: per fold, write an NPZ and start a
   fresh worker process that imports torch, trains that one fold and exits (as many at a
   time as there are workers).

    python bench/study_overhead.py --rows 5000 --trials 20 --folds 5 [--save bench/results/X.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import optuna

from trialfuse.api import RunOptions, compare_models
from trialfuse.driver.splits import holdout_split, kfold_indices
from trialfuse.survivors import TARGET, write_survivors


def subprocess_per_fold(X, y, folds, trials, workers: int, scratch: Path) -> float:
    """The source's way: an NPZ and a fresh python + torch process for every fold."""
    def one(index_job):
        index, (params, fold) = index_job
        train, val = folds[fold]
        path = scratch / f"fold-{index}.npz"
        np.savez(path, X_train=X[train], y_train=y[train], X_val=X[val], y_val=y[val])
        job = {"command": "train", "X_train_path": str(path), "params": params, "trial_number": index,
               "fold_idx": fold}
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
        proc = subprocess.run([sys.executable, "-m", "trialfuse.cli", "worker"], text=True, env=env,
                              input=json.dumps(job) + '\n{"command": "shutdown"}\n', capture_output=True, check=True)
        answer = json.loads(proc.stdout.splitlines()[1])
        path.unlink()
        assert answer["status"] == "complete", answer
        return answer

    jobs = [(params, fold) for params in trials for fold in range(len(folds))]
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, enumerate(jobs)))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--save", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_survivors(tmp / "survivors.csv", rows=args.rows, seed=0)
        results = compare_models(RunOptions(data=data, target=TARGET, models=["nn"], trials=args.trials,
                                            folds=args.folds, out=tmp / "run", devices=str(args.workers),
                                            prune=False))  # every fold trained: like with like
        study_wall = results["families"]["nn"]["seconds"]
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
            str(tmp / "run" / "study.journal")))
        trials = optuna.load_study(study_name="nn", storage=storage).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        busy = sum(sum(t.user_attrs["fold_seconds"]) for t in trials)
        from trialfuse.catalog import params_from_trial

        table = np.loadtxt(data, delimiter=",", skiprows=1)
        X, y = table[:, :-1], table[:, -1]
        rest, _ = holdout_split(len(y), 0.2, 0)
        folds = kfold_indices(len(rest), args.folds, 0)
        old_wall = subprocess_per_fold(X[rest], y[rest], folds, [params_from_trial("nn", t) for t in trials],
                                       args.workers, tmp)
    report = {
        "date": date.today().isoformat(), "device": f"cpu x {os.cpu_count()}", "rows": args.rows,
        "trials": args.trials, "folds": args.folds, "workers": args.workers,
        "study_wall_s": round(study_wall, 2), "worker_training_s": round(busy, 2),
        "training_per_worker_s": round(busy / args.workers, 2),
        "study_wall_over_training": round(study_wall / (busy / args.workers), 3),
        "subprocess_per_fold_wall_s": round(old_wall, 2),
        "speedup_vs_subprocess_per_fold": round(old_wall / study_wall, 2),
    }
    print(json.dumps(report, indent=2))
    if args.save:
        args.save.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
