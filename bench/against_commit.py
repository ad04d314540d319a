"""The same `trialfuse run` command with an earlier commit and with this checkout, on one machine.

An issue's "no slower than today's X" was timed on whatever machine its writer had; machines
here differ by 2-3x from session to session. So the earlier code is checked out (a git
worktree of `--base`) and run with this interpreter, its runs alternating with this
checkout's, on the same reference table and the same rows. Each run's whole wall time (the
process from start to exit: search, retrain, report) is what counts.

    python bench/against_commit.py --base bc0b25e [--rows 20000] [--repeat 1] [--save X.json] -- --trials 10
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from trialfuse.survivors import TARGET, write_survivors

HERE = Path(__file__).resolve().parents[1]


def one_run(src: Path, data: Path, out: Path, run_args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}  # the workers it starts inherit it: the same code
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "trialfuse", "run", str(data), "--target", TARGET, "--out", str(out),
                    "--quiet", *run_args], env=env, check=True)
    wall = time.perf_counter() - started
    results = json.loads((out / "results.json").read_text())
    holdout = score(results, "holdout_score", "holdout_r2")
    return {"wall_s": round(wall, 1), "holdout_score": round(holdout, 4), "winner": results["winner"],
            "holdout_score_exact": holdout,  # a refactor gives the same numbers, not close ones
            "trials": {name: {"complete": f["trials_complete"], "pruned": f["trials_pruned"],
                              "failed": f["trials_failed"], "status": f["status"],
                              "cv_score_mean": score(f, "cv_score_mean", "cv_r2_mean"), "best_trial": f["best_trial"]}
                       for name, f in results["families"].items()}}


def score(record: dict, name: str, before_the_task: str) -> float:
    """A score from results.json by today's name, or by the R² name an older commit wrote."""
    return record[name] if name in record else record[before_the_task]


def short_commit(revision: str) -> str:
    return subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", revision], check=True,
                          capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--save", type=Path)
    ap.add_argument("run_args", nargs="*", help="after --: what `trialfuse run` gets besides table, target, out")
    args = ap.parse_args()
    base, head = short_commit(args.base), short_commit("HEAD")
    runs: dict[str, list[dict]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(tree), base], check=True,
                       capture_output=True)
        try:
            data = write_survivors(Path(tmp) / "survivors.csv", rows=args.rows, seed=0)
            for i in range(args.repeat):  # which goes first alternates too: the first run warms the caches
                pair = [("base", tree / "src"), ("head", HERE / "src")]
                for which, src in pair if i % 2 == 0 else pair[::-1]:
                    runs[which].append(one_run(src, data, Path(tmp) / f"{which}-{i}", args.run_args))
                    print(which, json.dumps(runs[which][-1]), flush=True)
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(tree)], check=False)
    best = {which: min(r["wall_s"] for r in rs) for which, rs in runs.items()}
    report = {"date": date.today().isoformat(), "device": f"cpu x {os.cpu_count()}", "rows": args.rows,
              "command": "trialfuse run survivors.csv --target score " + " ".join(args.run_args),
              "base": {"commit": base, "runs": runs["base"]}, "head": {"commit": head, "runs": runs["head"]},
              "speedup": round(best["base"] / best["head"], 2)}
    print(json.dumps(report, indent=2))
    if args.save:
        args.save.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
