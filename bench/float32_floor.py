"""How far float32 training is from itself: the fused-vs-serial gap against the noise floor.

In float32, fused and one-at-a-time training differ by up to ~1e-3 in R² (batched and single
matmuls round differently). This asks whether that gap is the fused trainer's or float32
training's own: the same configs (drawn from the NN search space) trained three ways on the
reference table, all in one process run,
- serial: one model at a time (the reference);
- fused: stacked, one batch per depth;
- serial, inputs moved by one rounding step: the features times (1 + 1e-7), below what
  float32 resolves (2^-23 = 1.2e-7), so each value moves by at most one unit in the last place;
and reports |R² difference| from serial for the other two, plus float64 fused for contrast.

    python bench/float32_floor.py --rows 4000 --configs 12 --folds 3 --epochs 60 [--save X.json]
"""
from __future__ import annotations

import argparse
import json
import os
from datetime import date
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import KFold

from trialfuse.bench import sample_configs
from trialfuse.engine.fused.train import train_many
from trialfuse.survivors import make_survivors

ROUNDING_STEP = 1e-7  # relative: under float32's 2^-23, so a value moves by at most one ulp


def r2s(results: list[dict]) -> np.ndarray:
    return np.array([r["r2"] for r in results])


def summary(gaps: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(gaps)), "p90": float(np.quantile(gaps, 0.9)), "max": float(gaps.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--configs", type=int, default=12)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--save", type=Path)
    args = ap.parse_args()
    X, y, _ = make_survivors(args.rows, seed=0)
    folds = list(KFold(args.folds, shuffle=True, random_state=0).split(X))
    configs = [{**c, "dropout": 0.0} for c in sample_configs(args.configs, args.epochs, seed=0)]  # masks aside
    serial = r2s(train_many(configs, X, y, folds, fuse="off"))
    gaps = {
        "fused_float32": np.abs(r2s(train_many(configs, X, y, folds, fuse="on")) - serial),
        "serial_float32_inputs_one_rounding_step_apart": np.abs(
            r2s(train_many(configs, X * (1 + ROUNDING_STEP), y, folds, fuse="off")) - serial),
        "fused_float64_vs_serial_float64": np.abs(
            r2s(train_many(configs, X, y, folds, fuse="on", dtype=torch.float64))
            - r2s(train_many(configs, X, y, folds, fuse="off", dtype=torch.float64))),
    }
    report = {"date": date.today().isoformat(), "device": f"cpu x {os.cpu_count()}", "rows": args.rows,
              "configs": args.configs, "folds": args.folds, "epochs": args.epochs,
              "abs_r2_difference_from_serial": {name: summary(g) for name, g in gaps.items()},
              "models": len(serial)}
    print(json.dumps(report, indent=2))
    if args.save:
        args.save.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
