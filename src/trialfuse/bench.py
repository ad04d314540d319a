"""Speed of NN training, the slow way and the fast way, in one process run.

The same configs x folds are trained one model at a time (`--fuse off`), fused
(`on`) and as the study would (`auto`), on the reference table. Needs only
numpy, scikit-learn and torch, so it runs on a bare GPU machine with `PYTHONPATH=src`.
"""
from __future__ import annotations

import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import KFold

from trialfuse.catalog import FAMILIES, NN, RandomTrial
from trialfuse.engine.families import DeadlineReached
from trialfuse.engine.fused.batching import AS_A_STUDY, FILL_MODEL_ROWS, SNUG_PADDING, Batching
from trialfuse.engine.fused.train import train_many
from trialfuse.errors import UserError
from trialfuse.fuse import Fuse
from trialfuse.survivors import make_survivors


@dataclass(frozen=True)
class Mode:
    """One way of training the same configs: `fuse` option, the fused matmuls' precision (see
    engine/fused/precision.py; a one-at-a-time mode takes tf32 as torch's float32 matmul
    setting), torch.compile for the hidden layers (None: the trainer's own choice), and how
    batches are cut."""

    fuse: str
    precision: str = "fp32"
    compiled: bool | None = False
    batching: Batching = AS_A_STUDY


MODES: dict[str, Mode] = {
    "serial": Mode("off"), "auto": Mode("auto", "auto", compiled=None), "serial-tf32": Mode("off", "tf32"),
    "fused": Mode("on"), "fused-tf32": Mode("on", "tf32"), "fused-bf16": Mode("on", "bf16"),
    "fused-compiled": Mode("on", compiled=True), "fused-compiled-tf32": Mode("on", "tf32", compiled=True),
    "fused-compiled-bf16": Mode("on", "bf16", compiled=True),
    "fused-filled": Mode("on", batching=Batching(fill=FILL_MODEL_ROWS)),
    "fused-padded": Mode("on", batching=Batching(pad_depths=True)),
    "fused-snug": Mode("on", batching=Batching(max_padding=SNUG_PADDING)),
    "auto-snug": Mode("auto", "auto", compiled=None, batching=Batching(max_padding=SNUG_PADDING)),
}


def parse_modes(text: str) -> tuple[str, ...]:
    """`--modes` as the names of MODES, in order; ValueError names the known ones."""
    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    if not chosen or any(m not in MODES for m in chosen):
        raise ValueError(f"--modes takes {', '.join(MODES)}, got {text!r}")
    return chosen


def sample_configs(n: int, epochs: int, seed: int = 0, shape: str | None = None) -> list[dict[str, Any]]:
    """NN configs drawn from the catalog's NN search space, with a fixed epoch budget, each epoch
    one step on the whole fold (the work the fused trainer's figures are measured on). `shape`
    ("3x128": depth x width) fixes every model to that MLP with ReLU, dropout 0.2 and no early
    stopping, as `tools/gpu_limit.py` trains it: the same work for both, so speeds compare."""
    trial = RandomTrial(np.random.default_rng(seed))
    configs = [{**FAMILIES[NN].suggest(trial), "epochs": epochs, "batch_size": 0} for _ in range(n)]
    if shape:
        depth, width = (int(v) for v in shape.lower().split("x"))
        configs = [{**c, "hidden_layers": [width] * depth, "use_leaky_relu": False, "dropout": 0.2,
                    "early_stopping_patience": epochs + 1, "min_delta": 0.0} for c in configs]
    return configs


def check_device(device: str) -> None:
    """`device` names one this torch can train on: cpu, or cuda[:N] with a GPU N here (a
    CPU build of torch, or a GPU not there, is one line before anything is timed)."""
    if device == "cpu":
        return
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise UserError(f"--device must be cpu or cuda[:N], got {device!r}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        there = f"{count} GPU(s) here" if count else f"torch {torch.__version__} here sees no GPU"
        raise UserError(f"--device {device}: {there}; --device cpu times the CPU")


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def run_bench(rows: int = 10_000, configs: int = 20, folds: int = 5, epochs: int = 100, device: str = "cpu",
              modes: tuple[str, ...] = ("serial", "fused", "auto"), seed: int = 0, mode_limit_s: float | None = None,
              on_mode: Callable[[dict[str, Any]], None] | None = None, shape: str | None = None) -> dict[str, Any]:
    """Each mode trains the same configs x folds; a mode still training after `mode_limit_s`
    is cut and says so. `on_mode(report)` after each mode: a caller can save what is measured."""
    X, y, _ = make_survivors(rows, seed=0)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(X))
    cfgs = sample_configs(configs, epochs, seed, shape)
    report: dict[str, Any] = {"date": date.today().isoformat(), "device": device, "device_name": device_name(device),
                              "rows": rows, "configs": configs, "folds": folds, "max_epochs": epochs, "shape": shape,
                              "torch": torch.__version__, "modes": {}}
    scores = {}
    for name in modes:
        mode = MODES[name]
        torch.set_float32_matmul_precision("high" if mode.precision == "tf32" else "highest")  # one at a time
        try:
            # outside the timing, what a worker pays once in its life: one short batch of this mode at
            # the real shapes (the allocator, kernels, and the compiler's graphs where it compiles)
            started = time.perf_counter()
            short = [{**c, "epochs": 2} for c in cfgs[:2]]
            train_many(short, X, y, splits[:1], device=device, fuse=Fuse(mode.fuse), seed=seed, compiled=mode.compiled,
                       batching=mode.batching, precision=mode.precision)
            _synchronize(device)
            report.setdefault("warm_up_seconds", {})[name] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            results = train_many(cfgs, X, y, splits, device=device, fuse=Fuse(mode.fuse), seed=seed,
                                 compiled=mode.compiled, batching=mode.batching, precision=mode.precision,
                                 deadline=None if mode_limit_s is None else time.time() + mode_limit_s)
            _synchronize(device)
        except DeadlineReached:
            report["modes"][name] = {"cut_after_s": mode_limit_s}
            if on_mode:
                on_mode(report)
            continue
        finally:
            torch.set_float32_matmul_precision("highest")
        seconds = time.perf_counter() - started
        model_epochs = sum(r.rounds_run for r in results)
        scores[name] = np.array([r.r2 for r in results])
        report["modes"][name] = {"seconds": round(seconds, 3), "model_epochs": model_epochs,
                                 "model_epochs_per_s": round(model_epochs / seconds, 1),
                                 "mean_r2": float(np.nanmean(scores[name])),
                                 "precision": sorted({r.precision or ("tf32" if mode.precision == "tf32" else "fp32")
                                                      for r in results}),  # one at a time: torch's float32 setting
                                 "r2": [round(float(v), 5) for v in scores[name]],
                                 "best_epoch": [r.best_rounds for r in results],
                                 "batch_modes": sorted({r.batch_mode for r in results}),
                                 "batch_sizes": sorted({r.fused_batch_size for r in results})}
        if on_mode:
            on_mode(report)
    if "serial" in scores:
        base = report["modes"]["serial"]["seconds"]
        for mode, entry in report["modes"].items():
            if mode in scores:
                entry["speedup_vs_serial"] = round(base / entry["seconds"], 2)
                entry["max_abs_r2_vs_serial"] = float(np.nanmax(np.abs(scores[mode] - scores["serial"])))
                entry["mean_r2_vs_serial"] = float(np.nanmean(scores[mode]) - np.nanmean(scores["serial"]))
    report["config_list"] = cfgs
    return report


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def format_report(report: dict[str, Any]) -> str:
    width = max(len(mode) for mode in report["modes"]) + 2
    lines = [f"{report['configs']} configs x {report['folds']} folds, {report['rows']} rows, <= {report['max_epochs']}"
             f" epochs on {report['device']} ({report['device_name']})",
             f"{'mode':<{width}}{'seconds':>10}{'model-epochs/s':>16}{'x vs serial':>13}{'mean R²':>10}"]
    for mode, e in report["modes"].items():
        if "cut_after_s" in e:
            lines.append(f"{mode:<{width}}  cut: still training after {e['cut_after_s']:g} s")
            continue
        lines.append(f"{mode:<{width}}{e['seconds']:>10.2f}{e['model_epochs_per_s']:>16.1f}"
                     f"{e.get('speedup_vs_serial', float('nan')):>13.2f}{e['mean_r2']:>10.4f}")
    return "\n".join(lines)
