"""Which worker trains what: the rule on its own, then a real pool whose "GPU" worker is a
CPU process the pool treats as one (no GPU needed)."""
from __future__ import annotations

import time

import numpy as np

from trialfuse.catalog import STARTS
from trialfuse.survivors import make_survivors
from trialfuse.transport.fold_queue import TrialKey
from trialfuse.transport.placement import (
    GPU_TREES_MIN_ROWS,
    MAX_NN_WINDOW,
    Slot,
    WorkerKind,
    accepts,
    device_for,
    gpus_without_cuda_note,
    nn_models_fit,
    window,
)
from trialfuse.transport.process_pool import WorkerPool

GPU, CPU = Slot(WorkerKind.GPU, "0"), Slot(WorkerKind.CPU)
LIGHTGBM_CUDA = {"lightgbm_cuda": True}
SMALL, LARGE = 20_000, GPU_TREES_MIN_ROWS


def test_on_a_gpu_machine_the_nn_goes_only_to_gpu_workers():
    assert device_for("nn", [GPU, CPU], [{}, {}], SMALL) == "gpu"
    assert accepts(GPU, "nn", [GPU, CPU], [{}, {}], SMALL) and not accepts(CPU, "nn", [GPU, CPU], [{}, {}], SMALL)
    assert device_for("nn", [CPU, CPU], [{}, {}], SMALL) == "cpu"  # a CPU-only machine trains it on the CPU


def test_tree_families_search_on_the_gpu_only_for_large_tables_and_where_built():
    for family in ("xgboost", "catboost", "lightgbm", "hgb"):
        assert device_for(family, [GPU, CPU], [{}, {}], SMALL) == "cpu"
    assert device_for("xgboost", [GPU, CPU], [{}, {}], LARGE) == "gpu"
    assert device_for("catboost", [GPU, CPU], [{}, {}], LARGE) == "gpu"
    assert device_for("lightgbm", [GPU, CPU], [{}, {}], LARGE) == "cpu"  # the pip wheel has no CUDA learner
    assert device_for("lightgbm", [GPU, CPU], [LIGHTGBM_CUDA, {}], LARGE) == "gpu"
    assert device_for("lightgbm", [GPU, GPU, CPU], [LIGHTGBM_CUDA, {}, {}], LARGE) == "cpu"  # every GPU worker
    assert device_for("hgb", [GPU, CPU], [LIGHTGBM_CUDA, {}], LARGE) == "cpu"


def test_with_no_cpu_worker_the_gpu_workers_take_everything():
    for family in ("nn", "xgboost", "lightgbm", "catboost", "hgb"):
        assert device_for(family, [GPU], [{}], SMALL) == "gpu"


def test_gpu_workers_whose_torch_found_no_gpu_are_named_in_one_line():
    from types import SimpleNamespace as Worker

    node = "a1b2c3d4" + "e" * 48
    seeing = Worker(slot=Slot(WorkerKind.GPU, "0", node=node), ready={"device": "cuda:0"})
    blind = Worker(slot=Slot(WorkerKind.GPU, "1", node=node), ready={"device": "cpu"})
    cpu = Worker(slot=CPU, ready={"device": "cpu"})
    unstarted = Worker(slot=GPU, ready={})  # no ready line yet: nothing known about it
    assert gpus_without_cuda_note([seeing, cpu, unstarted]) is None
    note = gpus_without_cuda_note([seeing, blind, cpu])
    assert note.startswith("1 GPU worker on Ray node a1b2c3d4 found no GPU through torch")
    assert gpus_without_cuda_note([Worker(slot=GPU, ready={"device": "cpu"})] * 2).startswith("2 GPU workers found")
    moved = Worker(slot=Slot(WorkerKind.GPU, "0", node=node), ready={"device": "cpu", "node": "f9e8d7c6" + "0" * 48})
    assert " on Ray node f9e8d7c6 found" in gpus_without_cuda_note([moved])  # where the actor ran (affinity is soft)


def test_windows_follow_the_workers_that_take_the_family():
    cpu_only = [CPU, CPU]
    assert window("lightgbm", cpu_only, [{}, {}], folds=5, rows=20000, features=62) == 4  # the catalog's floor
    assert window("nn", cpu_only, [{}, {}], folds=5, rows=20000, features=62) == 1  # one at a time: no batch to fill
    assert window("nn", [CPU] * 16, [{}] * 16, folds=5, rows=20000, features=62) == 7  # every worker twice over
    box = [GPU] + [CPU] * 15  # one GPU, 16 cores
    readies = [{"gpu_memory_free": 78 * 2**30}] + [{}] * 15
    assert window("lightgbm", box, readies, folds=5, rows=20000, features=62) == 6  # 15 workers, twice over
    nn = window("nn", box, readies, folds=5, rows=20000, features=62)
    assert 32 <= nn <= MAX_NN_WINDOW  # dozens of models per fused batch on an 80 GB GPU
    assert nn == min(MAX_NN_WINDOW, nn_models_fit(78 * 2**30, 16000, 62) // 5)
    small = [{"gpu_memory_free": 2**30}] + [{}] * 15
    assert window("nn", box, small, folds=5, rows=20000, features=62) == 8  # never below the catalog's
    assert window("nn", box, readies, folds=5, rows=20000, features=62, fused=False) == 8  # --fuse off


def test_with_a_trial_count_the_gpu_sized_nn_window_holds_an_eighth_of_it():
    box = [GPU] + [CPU] * 15
    readies = [{"gpu_memory_free": 78 * 2**30}] + [{}] * 15
    wide = window("nn", box, readies, folds=5, rows=20000, features=62)  # a time budget: what memory holds
    assert wide > 32
    assert window("nn", box, readies, folds=5, rows=20000, features=62, trials=10) == 8  # never below the catalog's
    assert window("nn", box, readies, folds=5, rows=20000, features=62, trials=256) == 32
    assert window("nn", box, readies, folds=5, rows=20000, features=62, trials=10_000) == wide
    assert window("lightgbm", box, readies, folds=5, rows=20000, features=62, trials=10) == 6  # as before


def test_a_real_pool_sends_nn_tasks_to_its_gpu_worker_and_tree_folds_to_its_cpu_worker(tmp_path):
    X, y, _ = make_survivors(400, seed=0)
    folds = [(np.arange(0, 300), np.arange(300, 400)), (np.arange(100, 400), np.arange(0, 100))]
    slots = [Slot(WorkerKind.GPU, ""), Slot(WorkerKind.CPU)]  # worker 0: a CPU process standing in for a GPU worker
    nn = {"hidden_layers": [16], "epochs": 5, "learning_rate": 1e-2}
    lightgbm = {**STARTS["lightgbm"][0]}
    xgboost = {**STARTS["xgboost"][0]}
    with WorkerPool(X, y, folds, slots=slots, scratch=tmp_path) as pool:
        deadline = time.monotonic() + 120
        while not all(w.ready for w in pool._all):  # both said ready: the "GPU" one without LightGBM's CUDA learner
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert pool._all[0].ready.get("lightgbm_cuda") is None  # its process sees no GPU: nothing probed
        submitted = 0
        for number in range(3):
            for family, params in (("nn", nn), ("lightgbm", lightgbm), ("xgboost", xgboost)):
                pool.submit(TrialKey(family, number), params, [0, 1], seed=number, diagonal=False)
                submitted += 2
        pool.dispatch()
        answers = [pool.next_done(timeout=120) for _ in range(submitted)]
        assert all(a is not None and a.result["status"] == "complete" for a in answers)
        workers = {family: {t["worker"] for t in pool.timeline if t["what"] == family}
                   for family in ("nn", "lightgbm", "xgboost")}
        devices = {t["worker"]: t["device"] for t in pool.timeline}
        assert pool.activity() == [("gpu (a cpu stand-in)", "idle"), ("cpu", "idle")]
    assert workers["nn"] == {0} and workers["lightgbm"] == {1} and workers["xgboost"] == {1}  # a small table
    assert devices.get(0) == "gpu (a cpu stand-in)" and devices.get(1) == "cpu"


def test_a_gpu_worker_without_lightgbm_installed_still_says_ready(monkeypatch):
    """A bare GPU machine may carry only what the NN needs: the worker's capabilities say
    LightGBM has no CUDA learner there instead of dying on the import (found on an H100)."""
    import sys

    import torch

    from trialfuse.transport import server

    monkeypatch.setitem(sys.modules, "lightgbm", None)  # `import lightgbm` now raises ImportError
    monkeypatch.delitem(sys.modules, "trialfuse.engine.families.lightgbm_trees", raising=False)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *device: (3 * 2**30, 80 * 2**30))
    assert server.capabilities("cuda:0") == {"lightgbm_cuda": False, "gpu_memory_free": 3 * 2**30}


def test_a_real_pool_in_a_hurry_finishes_the_trial_under_way_first_and_says_what_runs(tmp_path):
    X, y, _ = make_survivors(400, seed=0)
    folds = [(np.arange(0, 300), np.arange(300, 400)), (np.arange(100, 400), np.arange(0, 100))]
    lightgbm = {**STARTS["lightgbm"][0]}

    def take_order(hurry: bool) -> list[tuple[int, int]]:
        with WorkerPool(X, y, folds, slots=[Slot(WorkerKind.CPU)], scratch=tmp_path) as pool:
            pool.hurry_at = 0.0 if hurry else None
            for number in (0, 1):  # prunable: spread out, so trial 1's fold 0 comes before trial 0's fold 1
                pool.submit(TrialKey("lightgbm", number), lightgbm, [0, 1], seed=number, diagonal=True)
            pool.dispatch()
            first = pool.next_done(timeout=120)
            queued, running = pool.progress(("lightgbm", 1))
            assert queued + len(running) == 2 and all(seconds >= 0 for seconds in running)
            answers = [first] + [pool.next_done(timeout=120) for _ in range(3)]
            assert pool.progress(("lightgbm", 0)) == (0, [])
            return [(a.job.trial.number, a.job.fold) for a in answers]

    assert take_order(hurry=False) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert take_order(hurry=True) == [(0, 0), (0, 1), (1, 0), (1, 1)]
