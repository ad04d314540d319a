"""Prove the GPU path on a machine with a GPU, in one command: `bench/gpu_check`.

Each check prints PASS / FAIL / SKIP with its numbers and all go to one JSON report
(--save, or $OUT/gpu_check.json when $OUT is set). Needs numpy, scikit-learn and torch;
with optuna (and lightgbm) importable it also runs a whole study on the mixed pool. Without
a GPU the checks that need one are SKIP, unless --dry: then they run with CPU stand-ins
(small tables, a CPU process as the "GPU" worker), so the script itself is proven here:

    bench/gpu_check --device cpu --dry        # here, before spending device time
    bench/gpu_check                           # on the GPU machine
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import KFold

from trialfuse.bench import parse_modes, run_bench, sample_configs
from trialfuse.engine.families import FoldResult
from trialfuse.engine.fused import memory as fused_memory
from trialfuse.engine.fused import train as fused_train
from trialfuse.fuse import Fuse
from trialfuse.survivors import make_survivors
from trialfuse.testing import faults
from trialfuse.transport import protocol
from trialfuse.transport.fold_queue import TrialKey
from trialfuse.transport.protocol import TrainJob

DRY = False  # --dry: small tables, CPU stand-ins for the GPU


class Skip(Exception):
    """A check that cannot run here (no GPU, a library missing)."""


def needs_gpu(args) -> None:
    if not args.device.startswith("cuda") and not args.dry:
        raise Skip("no GPU in this run")


def on_gpu(args) -> bool:
    return args.device.startswith("cuda")


def table(rows: int, folds: int):
    rows = min(rows, 2000) if DRY else rows
    X, y, _ = make_survivors(rows, seed=0)
    return X, y, list(KFold(folds, shuffle=True, random_state=0).split(X))


def check_environment(args) -> dict:
    from trialfuse.driver.devices import describe, detect_gpus, plan_workers

    found = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
             "detect_gpus": detect_gpus(), "plan_auto": describe(plan_workers("auto")), "cores": os.cpu_count()}
    if torch.cuda.is_available():
        found["device_name"] = torch.cuda.get_device_name(0)
        found["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    if args.device.startswith("cuda") and not found["detect_gpus"]:
        raise AssertionError(f"torch sees a GPU but detect_gpus() found none: {found}")
    return found


def _worker(env_extra: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    return subprocess.Popen([sys.executable, "-m", "trialfuse", "worker"], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def check_worker_ready(args) -> dict:
    needs_gpu(args)
    worker = _worker({"CUDA_VISIBLE_DEVICES": args.gpu})
    try:
        ready = json.loads(worker.stdout.readline())
    finally:
        worker.kill()
        worker.wait()
    assert ready["device"] == ("cuda:0" if on_gpu(args) else "cpu"), ready
    return ready


def check_fused_equals_serial(args) -> dict:
    X, y, folds = table(5000, 2)
    configs = [{**c, "dropout": 0.0, "epochs": 30} for c in sample_configs(6, 30, seed=1)]
    fused = fused_train.train_many(configs, X, y, folds, device=args.device, fuse=Fuse("on"), dtype=torch.float64)
    serial = fused_train.train_many(configs, X, y, folds, device=args.device, fuse=Fuse("off"), dtype=torch.float64)
    worst = max(abs(f.r2 - s.r2) for f, s in zip(fused, serial, strict=True))
    assert worst < 1e-6, f"fused and serial R² differ by {worst:g}"
    return {"models": len(fused), "max_abs_r2_difference": worst,
            "batch_modes": sorted({r.batch_mode for r in fused})}


def check_compiled_equals_eager(args) -> dict:
    """The compiled hidden layers (torch.compile) train every model as the eager ones do, dropout
    included: float64, R² within 1e-9, the same stopping epochs."""
    X, y, folds = table(5000, 3)
    configs = [{**c, "dropout": 0.3, "epochs": 30} for c in sample_configs(4, 30, seed=2)]
    run = lambda compiled: fused_train.train_many(configs, X, y, folds, device=args.device,  # noqa: E731
                                                  fuse=Fuse("on"), dtype=torch.float64, compiled=compiled)
    eager = run(False)
    started = time.perf_counter()
    compiled = run(True)
    seconds = time.perf_counter() - started
    worst = max(abs(c.r2 - e.r2) for c, e in zip(compiled, eager, strict=True))
    assert worst < 1e-9, f"compiled and eager R² differ by {worst:g}"
    assert [c.rounds_run for c in compiled] == [e.rounds_run for e in eager]
    return {"models": len(compiled), "max_abs_r2_difference": worst, "first_compiled_seconds": round(seconds, 1)}


def check_oom_recovery(args) -> dict:
    needs_gpu(args)
    X, y, folds = table(5000, 2)
    configs = [{**c, "epochs": 20} for c in sample_configs(8, 20, seed=2)]
    os.environ[faults.FAULT_ENV] = "oom:2"
    try:
        results = fused_train.train_many(configs, X, y, folds[:1], device=args.device, fuse=Fuse("on"))
    finally:
        del os.environ[faults.FAULT_ENV]
    fused_memory.release_memory(args.device)
    assert all(np.isfinite(r.r2) and r.fused_batch_size <= 2 for r in results if isinstance(r, FoldResult))
    if not on_gpu(args):
        return {"models": len(results)}
    leftover = torch.cuda.memory_allocated() / 2**20
    reserved = torch.cuda.memory_reserved() / 2**20
    assert leftover < 64, f"{leftover:.0f} MiB of tensors still allocated after release"
    assert reserved < 64, f"{reserved:.0f} MiB still reserved after release (cuBLAS workspaces?)"
    return {"models": len(results), "allocated_mib_after": round(leftover, 1), "reserved_mib_after": round(reserved, 1)}


def check_memory_cap_stable(args) -> dict:
    needs_gpu(args)
    X, y, folds = table(20000, 5)
    data = [fused_train.prepare_fold(X, y, t, v) for t, v in folds]
    configs = [{**c, "hidden_layers": [256, 256], "epochs": 10} for c in sample_configs(16, 10, seed=3)]
    jobs = [fused_train.Job(c, k, 0, key=i) for i, c in enumerate(configs) for k in range(len(folds))]
    dev = torch.device(args.device)
    before = fused_memory.memory_cap(jobs, data, dev, torch.float32)
    fused_train.run_jobs(jobs, data, device=args.device, fuse=Fuse("on"))
    after = fused_memory.memory_cap(jobs, data, dev, torch.float32)
    assert after >= 0.8 * before, f"the cap shrank from {before} to {after} models after one task"
    return {"cap_before": before, "cap_after": after}


def check_sticky_error_exits(args) -> dict:
    needs_gpu(args)
    worker = _worker({"CUDA_VISIBLE_DEVICES": args.gpu, faults.FAULT_ENV: "cudaerror:nn"})
    try:
        json.loads(worker.stdout.readline())
        X, y, folds = table(500, 2)
        with tempfile.TemporaryDirectory() as scratch:
            np.savez(Path(scratch) / "rows.npz", X=X, y=y)
            command = protocol.load_dataset(str(Path(scratch) / "rows.npz"), folds)
            worker.stdin.write(json.dumps(command) + "\n")
            worker.stdin.flush()
            worker.stdout.readline()
            job = TrainJob("nn", {"hidden_layers": [8], "epochs": 2}, 0, 0, trial=0)
            worker.stdin.write(json.dumps(protocol.train_batch([job], Fuse("on"))) + "\n")
            worker.stdin.flush()
            line = worker.stdout.readline()
            code = worker.wait(timeout=60)
    finally:
        worker.kill()
    answer = json.loads(line) if line else {}
    assert "illegal memory access" in answer.get("error", "") and code == 70, f"answered {line!r}, exit code {code}"
    return {"exit_code": code, "answer": answer.get("error")}


def check_saved_model_round_trip(args) -> dict:
    from trialfuse.engine.families import mlp

    X, y, folds = table(2000, 2)
    train, val = folds[0]
    fitted = mlp.fit({"hidden_layers": [32, 16], "epochs": 20}, X[train], y[train], X[val], y[val],
                     device=args.device, seed=0)
    with tempfile.TemporaryDirectory() as directory:
        name = mlp.save(fitted.model, directory)
        loaded = mlp.load(Path(directory) / name)
        worst = float(np.max(np.abs(mlp.predict(loaded, X[val]) - mlp.predict(fitted.model, X[val]))))
    assert worst < 1e-4, f"the saved model predicts {worst:g} away from the trained one"
    return {"max_abs_prediction_difference": worst}


def check_pool_placement(args) -> dict:
    from trialfuse.catalog import STARTS
    from trialfuse.driver.devices import plan_workers
    from trialfuse.transport.placement import Slot
    from trialfuse.transport.process_pool import WorkerPool

    needs_gpu(args)
    X, y, folds = table(20000, 5)
    slots = plan_workers("auto") if on_gpu(args) else [Slot("gpu", ""), Slot("cpu")]  # --dry: a stand-in
    families = ["nn"] + (["lightgbm"] if _importable("lightgbm") else [])
    configs = sample_configs(8, 10 if DRY else 50, seed=4)
    with tempfile.TemporaryDirectory() as scratch, \
            WorkerPool(X, y, folds, slots=slots, scratch=Path(scratch)) as pool:
        started = time.perf_counter()
        count = 0
        for number, config in enumerate(configs):
            pool.submit(TrialKey("nn", number), config, list(range(5)), seed=number, diagonal=False)
            count += 5
        if "lightgbm" in families:
            for number in range(4):
                pool.submit(TrialKey("lightgbm", number), STARTS["lightgbm"][0], list(range(5)), seed=number)
                count += 5
        pool.dispatch()
        answers = [pool.next_done(timeout=300) for _ in range(count)]
        seconds = time.perf_counter() - started
        timeline = list(pool.timeline)
        ready = [w.ready for w in pool._all]
    assert all(a is not None and a.result["status"] == "complete" for a in answers), \
        [a.result for a in answers if a is not None and a.result["status"] != "complete"][:3]
    nn_devices = {t["device"] for t in timeline if t["what"] == "nn"}
    assert nn_devices == {s.label for s in slots if s.kind == "gpu"}, nn_devices
    lightgbm_devices = {t["device"] for t in timeline if t["what"] == "lightgbm"}
    lightgbm_cuda = ready[0].get("lightgbm_cuda")
    if "lightgbm" in families and not lightgbm_cuda:
        assert lightgbm_devices == {"cpu"}, lightgbm_devices
    modes = sorted({a.result.get("batch_mode") for a in answers if a.job.family == "nn"})
    return {"seconds": round(seconds, 1), "nn_devices": sorted(nn_devices), "nn_batch_modes": modes,
            "lightgbm_devices": sorted(lightgbm_devices), "lightgbm_cuda": lightgbm_cuda,
            "nn_tasks": sum(t["what"] == "nn" for t in timeline),
            "models_per_nn_task": [t["jobs"] for t in timeline if t["what"] == "nn"]}


def _bench(args, rows: int, modes: tuple[str, ...], shape: str | None = None, epochs: int = 100) -> dict:
    needs_gpu(args)
    keep = ("seconds", "model_epochs_per_s", "speedup_vs_serial", "mean_r2", "mean_r2_vs_serial",
            "max_abs_r2_vs_serial", "precision", "batch_modes", "batch_sizes", "cut_after_s", "r2", "best_epoch")

    def summary(report: dict) -> dict:
        return {"rows": report["rows"], "configs": report["configs"], "folds": report["folds"], "shape": shape,
                "warm_up_seconds": report.get("warm_up_seconds"),
                **{mode: {k: entry[k] for k in keep if k in entry} for mode, entry in report["modes"].items()},
                "config_list": report.get("config_list")}

    report = run_bench(rows=2000 if DRY else rows, configs=4 if DRY else 20, folds=3 if DRY else 5,
                       epochs=min(epochs, 20) if DRY else epochs, device=args.device, modes=modes,
                       mode_limit_s=MODE_LIMIT_S, shape=shape,
                       on_mode=lambda partial: args.save_partial(summary(partial)))
    return summary(report)


# the measured default first, the one-at-a-time baseline last (every ratio is to it); each mode's
# figures are saved as it ends, so a check cut off by the command's time limit keeps them
BENCH_MODES = ("auto", "fused-compiled-bf16", "fused-compiled-tf32", "fused-bf16", "fused-snug", "serial")
MODE_LIMIT_S = 90  # a mode slower than this is cut (the 98,000-row fused run took 57 s on an H200)


def check_bench(args) -> dict:
    """The issue's figure: 20 configs x 5 folds on the 98,000-row table, one at a time vs fused:
    batches filled by model-rows or only by memory, cut at a padding limit, split by depth or
    padded to one depth, eager or compiled, float32 or TF32 matmuls (--modes picks some)."""
    return _bench(args, 98_000, args.modes or BENCH_MODES)


def check_bench_10k(args) -> dict:
    """The same on 10,000 rows, where one model alone leaves the GPU mostly idle."""
    return _bench(args, 10_000, args.modes or BENCH_MODES)


SHAPE_MODES = ("fused-compiled-bf16", "fused-bf16", "fused-compiled-tf32", "fused")


def check_bench_shape(args) -> dict:
    """The candidate modes on tools/gpu_limit.py's work: 100 MLPs of 3 x 128 (ReLU, dropout 0.2,
    no early stopping) on 78,400 training rows, 30 epochs, so model-epochs/s compare with the
    probe's run in the same command (--shape-modes picks others)."""
    return _bench(args, 98_000, args.shape_modes or SHAPE_MODES, shape="3x128", epochs=30)


def check_profile(args) -> dict:
    """Where a fused batch's time goes, compiled with bf16 matmuls (the candidate) and eager in
    float32 (the default): the top kernels of 10 epochs of 20 models of 3 x 128 on 78,400 rows."""
    needs_gpu(args)
    from torch.profiler import ProfilerActivity, profile

    X, y, folds = table(98_000, 5)
    configs = [{**c, "epochs": 10} for c in sample_configs(20, 10, seed=6, shape="3x128")]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu(args) else [])
    sort = "self_cuda_time_total" if on_gpu(args) else "self_cpu_time_total"
    found = {}
    for name, options in (("compiled_bf16", {"compiled": True, "precision": "bf16"}),
                          ("eager_fp32", {"compiled": False, "precision": "fp32"})):
        run = partial(fused_train.train_many, configs, X, y, folds[:1], device=args.device, fuse=Fuse("on"),
                      **options)
        run()  # warm-up: allocator, kernels, compiling
        with profile(activities=activities) as prof:
            started = time.perf_counter()
            run()
            seconds = time.perf_counter() - started
        table_text = prof.key_averages().table(sort_by=sort, row_limit=16, max_name_column_width=60)
        print(table_text)
        found[name] = {"seconds_profiled": round(seconds, 2), "top": table_text.splitlines()[:22]}
    return found


def check_study(args) -> dict:
    if not _importable("optuna"):
        raise Skip("optuna is not installed (carry its wheel)")
    needs_gpu(args)
    with tempfile.TemporaryDirectory() as work:
        from trialfuse.survivors import TARGET, write_survivors

        data = write_survivors(Path(work) / "survivors.csv", rows=2000 if DRY else 98_000, seed=0)
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "trialfuse", "run", str(data), "--target", TARGET,
                               "--models", "nn", "--trials", "2" if DRY else "20", "--folds", "5",
                               "--out", f"{work}/run", "--quiet", "--json", *args.study_args.split()],
                              capture_output=True, text=True, timeout=420)
        seconds = time.perf_counter() - started
        assert proc.returncode == 0, proc.stderr[-1500:]
        results = json.loads(proc.stdout)
        timeline = json.loads((Path(work) / "run" / "timeline.json").read_text())
    return {"seconds": round(seconds, 1), "device": results["device"], "winner": results["winner"],
            "driver_seconds": results["seconds"], "nn_seconds": results["families"]["nn"].get("seconds"),
            "tasks": timeline["tasks"],
            "holdout_score": results["holdout_score"],
            "cv_r2": {f: r["cv_score_mean"] for f, r in results["families"].items()},
            "nn_models_per_task": [t["jobs"] for t in timeline["tasks"] if t["what"] == "nn"]}


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def bench_modes(text: str) -> tuple[str, ...]:
    """--modes, checked before any device time is spent on the modes in front of a typo."""
    try:
        return parse_modes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


CHECKS: list[tuple[str, Callable]] = [
    ("environment", check_environment), ("worker_ready", check_worker_ready),
    ("fused_equals_serial", check_fused_equals_serial), ("compiled_equals_eager", check_compiled_equals_eager),
    ("oom_recovery", check_oom_recovery),
    ("memory_cap_stable", check_memory_cap_stable), ("sticky_error_exits", check_sticky_error_exits),
    ("saved_model_round_trip", check_saved_model_round_trip), ("pool_placement", check_pool_placement),
    ("bench_shape", check_bench_shape), ("bench", check_bench), ("bench_10k", check_bench_10k),
    ("profile", check_profile), ("study", check_study),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dry", action="store_true", help="run the GPU checks with CPU stand-ins, small tables")
    parser.add_argument("--only", help="comma-separated check names")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--modes", type=bench_modes,
                        help=f"the bench checks' modes, comma-separated (default {','.join(BENCH_MODES)}); "
                             "ratios are to serial")
    parser.add_argument("--study-args", default="", help="more `trialfuse run` options for the study check, "
                                                         "e.g. '--precision bf16'")
    parser.add_argument("--shape-modes", type=bench_modes,
                        help=f"bench_shape's modes (default {','.join(SHAPE_MODES)})")
    args = parser.parse_args()
    global DRY
    DRY = args.dry
    args.gpu = (os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0") if on_gpu(args) else ""
    chosen = [c for c in CHECKS if not args.only or c[0] in args.only.split(",")]
    report = {"date": date.today().isoformat(), "device": args.device, "checks": {}}
    save = args.save or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    failed = 0
    def write() -> None:
        if save:
            save.parent.mkdir(parents=True, exist_ok=True)
            save.write_text(json.dumps(report, indent=2, default=str) + "\n")

    for name, check in chosen:
        def save_partial(found: dict, name: str = name) -> None:  # a long check's figures so far
            report["checks"][name] = {**found, "status": "UNFINISHED"}
            write()

        args.save_partial = save_partial
        started = time.perf_counter()
        try:
            found, status = check(args), "PASS"
        except Skip as why:
            found, status = {"reason": str(why)}, "SKIP"
        except Exception as exc:  # a failing check is reported; the others still run
            partial = {k: v for k, v in report["checks"].get(name, {}).items() if k != "status"}  # figures so far
            found = {**partial, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
            status = "FAIL"
            failed += 1
        seconds = round(time.perf_counter() - started, 1)
        report["checks"][name] = {**found, "status": status, "seconds": seconds}
        shown = {k: v for k, v in found.items() if k != "trace"}
        print(f"{status:<5} {name:<24} {seconds:>6.1f} s  {json.dumps(shown, default=str)[:300]}", flush=True)
        write()  # after every check: a run cut off by its time limit still leaves what it found
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
