"""The transport's written contracts hold for every implementation, and the restart-once rule is one rule."""
from __future__ import annotations

import threading

import pytest

from trialfuse.transport.contracts import FoldPool, Worker, WorkerFactory, WorkerLost, request_with_restart
from trialfuse.transport.placement import Slot, WorkerKind
from trialfuse.transport.process_pool import WorkerPool
from trialfuse.transport.ray_workers import RayWorker
from trialfuse.transport.worker_process import WorkerProcess


def members(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")} | set(protocol.__annotations__)


@pytest.mark.parametrize("kind", [WorkerProcess, RayWorker])
def test_both_kinds_of_worker_keep_the_worker_contract_and_make_themselves(kind):
    worker = kind({}, {}, Slot(WorkerKind.CPU), None)  # made, not started
    assert isinstance(worker, Worker) and isinstance(kind, WorkerFactory)
    assert not worker.retired and not worker.tried.is_set() and worker.ready == {}


def test_the_worker_pool_offers_everything_the_scheduler_asks_of_a_pool():
    missing = {name for name in members(FoldPool) - set(FoldPool.__annotations__) if not hasattr(WorkerPool, name)}
    assert not missing
    assert {"deadline", "hurry_at", "keep_models"} <= set(FoldPool.__annotations__)


class Flaky:
    """A worker that is lost on its first `losses` requests, or times out."""

    def __init__(self, losses: int, timeout: bool = False):
        self.losses, self.timeout, self.requests, self.kills = losses, timeout, 0, 0
        self.busy, self.tried = threading.Lock(), threading.Event()

    def request(self, command, answers, timeout):
        self.requests += 1
        if self.timeout:
            raise TimeoutError("no answer within 1 s")
        if self.requests <= self.losses:
            raise WorkerLost(f"lost #{self.requests}")
        return [{"status": "complete"}] * answers

    def kill(self):
        self.kills += 1


def test_a_lost_worker_is_restarted_once_and_the_command_sent_again():
    worker = Flaky(losses=1)
    assert request_with_restart(worker, {}, 2, 1.0, lambda: False) == [{"status": "complete"}] * 2
    assert (worker.requests, worker.kills) == (2, 1)


def test_a_second_loss_goes_to_the_caller_with_its_reason():
    worker = Flaky(losses=2)
    with pytest.raises(WorkerLost, match="lost #2"):
        request_with_restart(worker, {}, 1, 1.0, lambda: False)
    assert (worker.requests, worker.kills) == (2, 2)


def test_a_timeout_is_not_retried_and_a_closed_pool_restarts_nothing():
    slow = Flaky(losses=0, timeout=True)
    with pytest.raises(TimeoutError):
        request_with_restart(slow, {}, 1, 1.0, lambda: False)
    assert slow.requests == 1
    closing = Flaky(losses=1)
    with pytest.raises(WorkerLost, match="lost #1"):
        request_with_restart(closing, {}, 1, 1.0, lambda: True)
    assert closing.requests == 1


def test_the_worker_pool_offers_what_a_side_job_asks():
    from trialfuse.transport.side_jobs import SharedWorkers

    assert not {name for name in members(SharedWorkers) if not hasattr(WorkerPool, name)}



def test_closing_a_worker_whose_stdin_another_thread_is_closing_does_not_raise():
    """CI, once: the pool's thread killed a worker while the driver closed it; the second
    close of the same pipe raised ValueError ("PyMemoryView_FromBuffer(): info->buf must not be
    NULL") out of `WorkerPool.__exit__`, failing a finished run."""
    from types import SimpleNamespace

    class Racing:
        def close(self):
            raise ValueError("PyMemoryView_FromBuffer(): info->buf must not be NULL")

    worker = WorkerProcess.__new__(WorkerProcess)
    worker.proc = SimpleNamespace(stdin=Racing(), poll=lambda: 0)
    worker.close()  # the worker has exited: only its stdin is closed
