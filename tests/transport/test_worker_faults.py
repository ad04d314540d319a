"""Faults inside a worker: a model out of memory alone, and a broken CUDA context."""
from __future__ import annotations

import numpy as np

from trialfuse.catalog import STARTS
from trialfuse.fuse import Fuse
from trialfuse.survivors import make_survivors
from trialfuse.testing import faults
from trialfuse.transport import protocol
from trialfuse.transport.placement import Slot
from trialfuse.transport.process_pool import WORKER_LOGS, WorkerPool
from trialfuse.transport.protocol import TrainJob
from trialfuse.transport.server import Server, broken_cuda_context

NN = {"hidden_layers": [16, 8], "epochs": 5, "learning_rate": 1e-2}


def test_nn_jobs_out_of_memory_alone_answer_errors_and_the_rest_of_the_task_completes(resident, monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "oom:0")  # every fused batch, down to one model, runs out of memory
    server = Server("cpu")
    server.handle(resident)
    jobs = [TrainJob("nn", NN, 0, 1, trial=0), TrainJob("lightgbm", {"num_leaves": 4}, 0, 2, trial=1, threads=1),
            TrainJob("nn", NN, 1, 1, trial=0)]
    answers = server.handle(protocol.train_batch(jobs, Fuse("on")))
    assert [a["status"] for a in answers] == ["error", "complete", "error"]
    assert "out of memory with one model alone" in answers[0]["error"] and answers[0]["trial"] == 0


def test_sticky_cuda_errors_are_told_from_the_others():
    assert broken_cuda_context("RuntimeError: CUDA error: an illegal memory access was encountered")
    assert broken_cuda_context("RuntimeError: CUDA error: unspecified launch failure")
    assert not broken_cuda_context("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert not broken_cuda_context("ValueError: bad params")


def test_a_worker_with_a_broken_cuda_context_exits_and_its_task_reruns_on_a_new_one(tmp_path, monkeypatch):
    counter = tmp_path / "counter"
    monkeypatch.setenv(faults.FAULT_ENV, f"cudaerror:lightgbm:1:{counter}")  # the first lightgbm fold only
    X, y, _ = make_survivors(300, seed=0)
    folds = [(np.arange(0, 200), np.arange(200, 300))]
    with WorkerPool(X, y, folds, slots=[Slot("cpu")], scratch=tmp_path) as pool:
        pool.submit(("lightgbm", 0), "lightgbm", STARTS["lightgbm"][0], [0], seed=0)
        pool.dispatch()
        done = pool.next_done(timeout=120)
    assert done is not None and done.result["status"] == "complete"  # the restarted worker trained it
    assert counter.read_text() == "2"  # struck once, then passed
    log = (tmp_path / WORKER_LOGS / "worker-0.log").read_text()
    assert "the CUDA context is broken" in log and "illegal memory access" in log
