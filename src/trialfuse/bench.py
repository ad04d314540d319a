"""Speed of NN training, the slow way and the fast way, in one process run.

The same configs x folds are trained one model at a time (`fuse=False`), fused
(`fuse=True`) and as the study would (`fuse="auto"`), on the reference table. Needs only
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

from trialfuse.fused_train import train_many
from trialfuse.search_space import NN_WIDTHS
from trialfuse.survivors import make_survivors


def sample_configs(n: int, epochs: int, seed: int = 0) -> list[dict[str, Any]]:
    """NN configs drawn from the search space (fixed epoch budget, dropout as searched)."""
    rng = np.random.default_rng(seed)
    configs = []
    for _ in range(n):
        depth = int(rng.integers(2, 5))
        configs.append({
            "hidden_layers": [int(rng.choice(NN_WIDTHS)) for _ in range(depth)],
            "learning_rate": float(10 ** rng.uniform(-4, np.log10(3e-2))),
            "dropout": float(rng.uniform(0, 0.5)),
            "epochs": epochs,
            "weight_decay": float(10 ** rng.uniform(-6, -2)),
            "optimizer": str(rng.choice(["adam", "adamw"])),
            "gradient_clip": float(rng.uniform(0.5, 5.0)),
            "early_stopping_patience": int(rng.integers(5, 21)),
            "min_delta": float(rng.uniform(0, 1e-3)),
            "use_leaky_relu": bool(rng.integers(0, 2)),
        })
    return configs


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def run_bench(rows: int = 10_000, configs: int = 20, folds: int = 5, epochs: int = 100, device: str = "cpu",
              modes: tuple[str, ...] = ("serial", "fused", "auto"), seed: int = 0) -> dict[str, Any]:
    X, y, _ = make_survivors(rows, seed=0)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(X))
    cfgs = sample_configs(configs, epochs, seed)
    train_many(cfgs[:2], X, y, splits[:1], device=device, fuse=True, seed=seed)  # warm-up: allocator, kernels
    report: dict[str, Any] = {"date": date.today().isoformat(), "device": device, "device_name": device_name(device),
                              "rows": rows, "configs": configs, "folds": folds, "max_epochs": epochs,
                              "torch": torch.__version__, "modes": {}}
    scores = {}
    for mode in modes:
        fuse = {"serial": False, "fused": True, "auto": "auto"}[mode]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        results = train_many(cfgs, X, y, splits, device=device, fuse=fuse, seed=seed)
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
        for entry in report["modes"].values():
            entry["speedup_vs_serial"] = round(base / entry["seconds"], 2)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['configs']} configs x {report['folds']} folds, {report['rows']} rows, <= {report['max_epochs']}"
             f" epochs on {report['device']} ({report['device_name']})",
             f"{'mode':<8}{'seconds':>10}{'model-epochs/s':>16}{'x vs serial':>13}{'mean R²':>10}"]
    for mode, e in report["modes"].items():
        lines.append(f"{mode:<8}{e['seconds']:>10.2f}{e['model_epochs_per_s']:>16.1f}"
                     f"{e.get('speedup_vs_serial', float('nan')):>13.2f}{e['mean_r2']:>10.4f}")
    return "\n".join(lines)
