"""What a wider NN window costs in search quality at equal trials.

On GPUs the NN keeps as many trials in flight as the fused batch holds (transport/placement.py:
up to 64 per GPU), since a fused batch pays off only with dozens of models. The price is
information: TPE asks the whole window before it hears from its first trial (constant liar
keeps the asks apart), so a window of W starts like W random draws. This runs the same NN
study (same table, seed, trial count, pruning on) with the window fixed at each W and prints
the best CV R² after n trials, over a few seeds. It measures the sampler, not the device, so
a CPU and a small table do (the NN's folds train one at a time here).

    python bench/nn_window.py --rows 2000 --trials 64 --windows 8,32,64 --seeds 0,1,2 [--save X.json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import optuna

from trialfuse.driver.devices import plan_workers
from trialfuse.driver.scheduler import run_studies
from trialfuse.driver.splits import holdout_split, kfold_indices
from trialfuse.driver.table import load_table
from trialfuse.survivors import TARGET, write_survivors
from trialfuse.transport.process_pool import WorkerPool


class FixedWindowPool(WorkerPool):
    """The pool as a run starts it, but with the NN window fixed instead of sized by the device."""

    def __init__(self, *args, nn_window: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.nn_window = nn_window

    def window(self, family: str, trials: int | None = None) -> int:
        self._windows[family] = self.nn_window
        return self.nn_window


def best_after(study: optuna.Study, checkpoints: list[int]) -> list[float | None]:
    """The best CV R² among the trials numbered below each checkpoint (the first n asked)."""
    complete = [(t.number, t.value) for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]
    return [max((v for n, v in complete if n < c), default=None) for c in checkpoints]


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--windows", default="8,32,64")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--save", type=Path)
    args = ap.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    checkpoints = sorted({c for c in (8, 16, 32, 48, 64, args.trials) if c <= args.trials})
    curves: dict[int, list[list[float | None]]] = {w: [] for w in windows}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_survivors(Path(tmp) / "survivors.csv", rows=args.rows, seed=0)
        table = load_table(data, TARGET)
        slots = plan_workers("auto")  # as a run starts them
        for seed in seeds:
            rest, _sealed = holdout_split(table.rows, 0.2, seed)
            folds = kfold_indices(len(rest), args.folds, seed)
            for window in windows:
                storage = optuna.storages.InMemoryStorage()
                with FixedWindowPool(table.X[rest], table.y[rest], folds, slots=slots,
                                     scratch=Path(tmp) / f"s{seed}w{window}",
                                     nn_window=window) as pool:
                    run_studies(["nn"], storage, args.trials, args.folds, seed, pool)
                curve = best_after(optuna.load_study(study_name="nn", storage=storage), checkpoints)
                curves[window].append(curve)
                print(f"seed {seed} window {window:>3}: " + " ".join(f"{v:.4f}" for v in curve), flush=True)
    mean = {w: [float(np.mean(col)) for col in zip(*runs, strict=True)] for w, runs in curves.items()}
    print(f"mean best CV R² after n trials ({len(seeds)} seeds, {args.rows} rows, {args.folds} folds)")
    print("trials  " + "".join(f"{c:>9}" for c in checkpoints))
    for w in windows:
        print(f"W={w:<5} " + "".join(f"{v:>9.4f}" for v in mean[w]))
    if args.save:
        args.save.write_text(json.dumps({
            "date": date.today().isoformat(), "device": f"cpu x {os.cpu_count()}", "rows": args.rows,
            "folds": args.folds, "trials": args.trials, "seeds": seeds, "checkpoints": checkpoints,
            "best_cv_r2": {str(w): runs for w, runs in curves.items()},
            "mean_best_cv_r2": {str(w): m for w, m in mean.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
