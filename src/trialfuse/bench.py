"""Speed of NN training, the slow way and the fast way, in one process run.

The same configs x folds are trained one model at a time (`--fuse off`), fused
(`on`) and as the study would (`auto`), on the reference table. Needs only
numpy, scikit-learn and torch, so it runs on a bare GPU machine with `PYTHONPATH=src`.
"""
from __future__ import annotations

import platform
import time
from datetime import date
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import KFold

from trialfuse.catalog import FAMILIES, RandomTrial
from trialfuse.engine.fused.train import train_many
from trialfuse.fuse import Fuse
from trialfuse.survivors import make_survivors

# mode -> (fuse option, float32 matmul precision): "high" lets a GPU's tensor cores take
# float32 matmuls as TF32 (10 mantissa bits), which the "-tf32" modes measure
MODES: dict[str, tuple[str, str]] = {
    "serial": ("off", "highest"), "fused": ("on", "highest"), "auto": ("auto", "highest"),
    "serial-tf32": ("off", "high"), "fused-tf32": ("on", "high"),
}


def sample_configs(n: int, epochs: int, seed: int = 0) -> list[dict[str, Any]]:
    """NN configs drawn from the catalog's NN search space, with a fixed epoch budget."""
    trial = RandomTrial(np.random.default_rng(seed))
    return [{**FAMILIES["nn"].suggest(trial), "epochs": epochs} for _ in range(n)]


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def run_bench(rows: int = 10_000, configs: int = 20, folds: int = 5, epochs: int = 100, device: str = "cpu",
              modes: tuple[str, ...] = ("serial", "fused", "auto"), seed: int = 0) -> dict[str, Any]:
    X, y, _ = make_survivors(rows, seed=0)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(X))
    cfgs = sample_configs(configs, epochs, seed)
    train_many(cfgs[:2], X, y, splits[:1], device=device, fuse=Fuse("on"), seed=seed)  # warm-up: allocator, kernels
    report: dict[str, Any] = {"date": date.today().isoformat(), "device": device, "device_name": device_name(device),
                              "rows": rows, "configs": configs, "folds": folds, "max_epochs": epochs,
                              "torch": torch.__version__, "modes": {}}
    scores = {}
    for mode in modes:
        fuse, precision = MODES[mode]
        torch.set_float32_matmul_precision(precision)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        try:
            results = train_many(cfgs, X, y, splits, device=device, fuse=Fuse(fuse), seed=seed)
        finally:
            torch.set_float32_matmul_precision("highest")
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        model_epochs = sum(r["epochs_run"] for r in results)
        scores[mode] = np.array([r["r2"] for r in results])
        report["modes"][mode] = {"seconds": round(seconds, 3), "model_epochs": model_epochs,
                                 "model_epochs_per_s": round(model_epochs / seconds, 1),
                                 "mean_r2": float(np.nanmean(scores[mode])),
                                 "batch_modes": sorted({r["batch_mode"] for r in results})}
    if "serial" in report["modes"]:
        base = report["modes"]["serial"]["seconds"]
        for mode, entry in report["modes"].items():
            entry["speedup_vs_serial"] = round(base / entry["seconds"], 2)
            entry["max_abs_r2_vs_serial"] = float(np.nanmax(np.abs(scores[mode] - scores["serial"])))
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['configs']} configs x {report['folds']} folds, {report['rows']} rows, <= {report['max_epochs']}"
             f" epochs on {report['device']} ({report['device_name']})",
             f"{'mode':<8}{'seconds':>10}{'model-epochs/s':>16}{'x vs serial':>13}{'mean R²':>10}"]
    for mode, e in report["modes"].items():
        lines.append(f"{mode:<8}{e['seconds']:>10.2f}{e['model_epochs_per_s']:>16.1f}"
                     f"{e.get('speedup_vs_serial', float('nan')):>13.2f}{e['mean_r2']:>10.4f}")
    return "\n".join(lines)
