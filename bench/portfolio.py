"""What the known-good start (catalog.STARTS) brings: the best CV R² found so far as a function
of elapsed time, with the portfolio and without it (TPE's random start-up trials from trial 0),
the same table, seed and budget.

    python bench/portfolio.py --timeout 60 --save bench/results/$(date +%F)-cpu-2core-portfolio.json

The curve is read back from the run's Optuna study (each complete trial's end time and CV R²),
all families together: "best so far" is the best trial of any family finished by then.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path

import optuna

from trialfuse.driver.options import RunOptions
from trialfuse.driver.run import compare_models
from trialfuse.driver.storage import open_storage
from trialfuse.survivors import TARGET, write_survivors


def best_so_far(out: Path, started: float, families: list[str], checkpoints: list[float]) -> list[float | None]:
    storage = open_storage(None, out)
    finished = []
    for family in families:
        study = optuna.load_study(study_name=family, storage=storage)
        finished += [(t.datetime_complete.timestamp() - started, t.value) for t in study.get_trials(deepcopy=False)
                     if t.state == optuna.trial.TrialState.COMPLETE]
    return [max((v for at, v in finished if at <= c), default=None) for c in checkpoints]


def one_run(data: Path, timeout: float, portfolio: bool, out: Path, checkpoints: list[float]) -> dict:
    opts = RunOptions(data=data, target=TARGET, timeout=timeout, out=out, portfolio=portfolio, ensemble=False)
    started = time.time()
    results = compare_models(opts).to_json()
    return {"portfolio": portfolio, "seconds": round(results["seconds"], 1), "holdout_score": results["holdout_score"],
            "winner": results["winner"],
            "trials_complete": {f: r["trials_complete"] for f, r in results["families"].items()},
            "best_cv_r2_by_time": dict(zip(map(str, checkpoints),
                                           best_so_far(out, started, list(results["families"]), checkpoints),
                                           strict=True))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--save", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args()
    step = max(5.0, args.timeout / 6)
    checkpoints = [round(step * i, 1) for i in range(1, int(args.timeout // step) + 1)]
    with tempfile.TemporaryDirectory() as scratch:
        data = write_survivors(Path(scratch) / "reference.csv", rows=args.rows, seed=0)
        runs = [one_run(data, args.timeout, portfolio, Path(scratch) / f"run-{portfolio}", checkpoints)
                for portfolio in (True, False)]
    print(f"reference table, {args.rows} rows, --timeout {args.timeout:g}s: best CV R² so far (any family)")
    print("seconds     " + "".join(f"{c:>9g}" for c in checkpoints) + "   holdout")
    for run in runs:
        curve = "".join(f"{v:>9.4f}" if v is not None else f"{'-':>9}" for v in run["best_cv_r2_by_time"].values())
        print(f"{'portfolio' if run['portfolio'] else 'TPE only':<12}{curve}   {run['holdout_score']:.4f}")
    if args.save:
        args.save.write_text(json.dumps({"date": date.today().isoformat(), "machine": "2-core CPU, no GPU",
                                         "rows": args.rows, "timeout": args.timeout, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
