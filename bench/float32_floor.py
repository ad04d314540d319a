"""How far float32 training is from itself: the fused-vs-serial gap against the noise floor.

In float32, fused and one-at-a-time training differ by up to ~1e-3 in R² (batched and single
matmuls round differently). This asks whether that gap is the fused trainer's or float32
training's own: the same configs (drawn from the NN search space) trained three ways on the
reference table, all in one process run,
- serial: one model at a time (the reference);
- fused: stacked, one batch per depth;
- serial, inputs moved by one rounding step: every feature value moved to a neighbouring
  float32, up or down at random (what rounding it the other way would give);
and reports |R² difference| from serial for the other two, plus serial again (0 if training
is deterministic) and float64 fused for contrast.

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


def one_rounding_step(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each value moved to the next float32 above or below it, at random."""
    x = np.asarray(X, dtype=np.float32)
    up = np.random.default_rng(seed).random(x.shape) < 0.5
    return np.where(up, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf)))


def r2s(results: list[dict]) -> np.ndarray:
    return np.array([r.r2 for r in results])


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
        "serial_float32_again": np.abs(r2s(train_many(configs, X, y, folds, fuse="off")) - serial),  # 0: deterministic
        "fused_float32": np.abs(r2s(train_many(configs, X, y, folds, fuse="on")) - serial),
        "serial_float32_inputs_one_rounding_step_apart": np.abs(
            r2s(train_many(configs, one_rounding_step(X), y, folds, fuse="off")) - serial),
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
