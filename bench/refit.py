"""Refit or fold models: how a saved model is served, compared on the same search.

For each table, `trialfuse run TABLE --trials N` twice with the same seed: `--refit` (each
saved model trained once more on all search rows) and `--no-refit` (each tree model served
as the mean of the K fold models the search trained). With a trial count and one seed the
two searches are the same trials and choose the same ensemble, so the holdout R² compares
the two ways of serving the very same models; wall time shows what the refit costs.

    pip install -e ".[bench]"
    python bench/refit.py --trials 6 --save bench/results/$(date +%F)-cpu-2core-refit.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from vs_peers import TABLES  # noqa: E402  the same tables as the comparison with the peers


def run(path: Path, target: str, trials: int, models: str, out: Path, serving: str) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "trialfuse", "run", str(path), "--target", target, "--trials",
                           str(trials), "--models", models, "--out", str(out), serving, "--quiet", "--no-explain"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"trialfuse failed: {proc.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    ensemble = results.get("ensemble") or {}
    return {"holdout_score": results["holdout_score"], "winner": results["winner"], "wall_seconds": round(wall, 1),
            "best_single_holdout_score": ensemble.get("best_single_holdout_score") if ensemble.get("chosen")
            else results["holdout_score"], "members": len(ensemble.get("members", [])) if ensemble.get("chosen") else 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--models", default="xgboost,lightgbm,catboost")
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trialfuse-refit-"))
    rows = []
    for name in args.tables.split(","):
        path, target = TABLES[name](work)
        row = {"table": name, "trials": args.trials, "models": args.models}
        for serving in ("--refit", "--no-refit"):
            row[serving.strip("-")] = run(path, target, args.trials, args.models, work / f"{name}{serving}", serving)
        rows.append(row)
        print(f"{name:<10} " + "  ".join(
            f"{way}: {row[way]['holdout_score']:.4f} (single {row[way]['best_single_holdout_score']:.4f}, "
            f"{row[way]['wall_seconds']:.0f} s)" for way in ("refit", "no-refit")), flush=True)
        if args.save:
            args.save.write_text(json.dumps({"date": date.today().isoformat(), "device": "cpu x 2", "runs": rows},
                                            indent=2) + "\n")


if __name__ == "__main__":
    main()
