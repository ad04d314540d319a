"""Classes end to end on the bench's class tables (vs_peers.py: the reference bands, Chile's
plebiscite vote, the flights' carrier): `trialfuse run` with all four families and a trial
count (no budget, so the NN is searched on a CPU too), then `trialfuse predict` on the whole
table; records each family's result, the ensemble, every holdout metric beside the prior's,
and how far the served model's holdout score is from the one the run recorded (it must be
under 1e-9). With `--api` the same through the Python API: `trialfuse.fit` on the table as a
DataFrame, then `trialfuse.load(run).predict_proba` in a fresh process.

    pip install -e ".[bench]"
    python bench/class_runs.py --trials 3 --save bench/results/$(date +%F)-cpu-2core-class-runs.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from io import StringIO
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from vs_peers import CLASSES, TABLES  # noqa: E402  (the bench's tables, made the same way)

from trialfuse.task import Task  # noqa: E402

API_PREDICT = """import sys, trialfuse, pandas as pd
print(trialfuse.load(sys.argv[1]).predict_proba(pd.read_csv(sys.argv[2])).to_csv(index=False))"""


def run(name: str, trials: int, work: Path, api: bool = False) -> dict:
    path, target = TABLES[name](work)
    out = work / f"{name}-{'api' if api else 'run'}"
    started = time.perf_counter()
    if api:
        import trialfuse

        trialfuse.fit(pd.read_csv(path), target, trials=trials, out=str(out), quiet=True)
    else:
        subprocess.run([sys.executable, "-m", "trialfuse", "run", str(path), "--target", target, "--trials",
                        str(trials), "--out", str(out), "--quiet"], check=True)
    wall = time.perf_counter() - started
    results = json.loads((out / "results.json").read_text())
    task = Task.from_json(results["task"])
    predict = ([sys.executable, "-c", API_PREDICT, str(out), str(path)] if api else
               [sys.executable, "-m", "trialfuse", "predict", str(out), str(path)])
    served = subprocess.run(predict, capture_output=True, text=True, check=True).stdout  # a fresh process
    holdout = json.loads((out / "holdout_indices.json").read_text())["holdout_rows"]
    predicted = pd.read_csv(StringIO(served))
    columns = [str(c) for c in task.classes] if api else [f"probability_{c}" for c in task.classes]
    probabilities = predicted[columns].to_numpy()[holdout]
    table = pd.read_csv(path)
    score = task.score(task.encode(table[target].iloc[holdout]), probabilities)
    ensemble = results.get("ensemble") or {}
    return {"table": name, "through": "python api" if api else "cli", "rows": results["rows"], "task": results["task"],
            "wall_seconds": round(wall, 1),
            "families": {f: {"status": r["status"], "trials_complete": r["trials_complete"],
                             "cv_score_mean": r["cv_score_mean"]} for f, r in results["families"].items()},
            "winner": results["winner"], "ensemble_members": len(ensemble.get("members", [])) if ensemble.get("chosen")
            else 0, "holdout_metrics": results["holdout_metrics"],
            "served_minus_recorded_holdout_score": abs(score - results["holdout_score"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default=",".join(sorted(CLASSES)))
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--api", action="store_true", help="trialfuse.fit and Model.predict_proba, not the CLI")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trialfuse-class-runs-"))
    rows = []
    for name in args.tables.split(","):
        row = run(name, args.trials, work, args.api)
        rows.append(row)
        model, prior = row["holdout_metrics"]["model"], row["holdout_metrics"]["prior"]
        print(f"{name:<8} {row['task']['kind']:<10} winner {row['winner']:<9} " + "  ".join(
            f"{metric} {value:.4f} (prior {prior[metric]:.4f})" for metric, value in model.items())
              + f"  served-recorded {row['served_minus_recorded_holdout_score']:.1e}  {row['wall_seconds']} s",
              flush=True)
        if args.save:
            args.save.write_text(json.dumps({"date": date.today().isoformat(), "device": "cpu x 2",
                                             "trials": args.trials, "through": "python api" if args.api else "cli",
                                             "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
