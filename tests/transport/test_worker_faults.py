"""Faults inside a worker: a model out of memory alone, and a broken CUDA context."""
from __future__ import annotations

import numpy as np
import pytest

from trialfuse.catalog import STARTS
from trialfuse.fuse import Fuse
from trialfuse.survivors import make_survivors
from trialfuse.testing import faults
from trialfuse.transport import protocol
from trialfuse.transport.contracts import SlotGone
from trialfuse.transport.fold_queue import TrialKey
from trialfuse.transport.placement import Slot, WorkerKind
from trialfuse.transport.process_pool import WORKER_LOGS, WorkerPool
from trialfuse.transport.protocol import TrainJob
from trialfuse.transport.server import Server, broken_cuda_context
from trialfuse.transport.worker_process import WorkerProcess

ONE_CPU = [Slot(WorkerKind.CPU)]  # one worker, one thread

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


def test_a_worker_with_a_broken_cuda_context_answers_the_cause_then_a_new_one_takes_over(tmp_path, monkeypatch):
    counter = tmp_path / "counter"
    monkeypatch.setenv(faults.FAULT_ENV, f"cudaerror:lightgbm:1:{counter}")  # the first lightgbm fold only
    X, y, _ = make_survivors(300, seed=0)
    folds = [(np.arange(0, 200), np.arange(200, 300))]
    with WorkerPool(X, y, folds, slots=ONE_CPU, scratch=tmp_path) as pool:
        pool.submit(TrialKey("lightgbm", 0), STARTS["lightgbm"][0], [0], seed=0)
        pool.dispatch()
        first = pool.next_done(timeout=120)
        exited = pool._all[0].proc.wait(timeout=30)
        pool.submit(TrialKey("lightgbm", 1), STARTS["lightgbm"][0], [0], seed=1)
        pool.dispatch()
        second = pool.next_done(timeout=120)
    assert first.result["status"] == "error" and "illegal memory access" in first.result["error"]  # the cause
    assert exited == 70  # the broken worker did not go on to fail every later job
    assert second.result["status"] == "complete"  # a new worker trained the next one
    log = (tmp_path / WORKER_LOGS / "worker-0.log").read_text()
    assert "the CUDA context is broken" in log


def test_a_worker_that_cannot_even_be_started_answers_every_job_with_the_reason(tmp_path, monkeypatch):
    def no_process(self):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(WorkerProcess, "start", no_process)
    X, y, _ = make_survivors(100, seed=0)
    with WorkerPool(X, y, [(np.arange(50), np.arange(50, 100))], slots=ONE_CPU, scratch=tmp_path) as pool:
        pool.submit(TrialKey("lightgbm", 0), STARTS["lightgbm"][0], [0], seed=0)
        pool.submit(TrialKey("lightgbm", 1), STARTS["lightgbm"][0], [0], seed=1)
        pool.dispatch()
        answers = [pool.next_done(timeout=30) for _ in range(2)]
    assert all(a is not None and a.result["status"] == "error" for a in answers)  # answered, not lost
    assert "Too many open files" in answers[0].result["error"]


def test_a_json_line_that_is_not_an_object_restarts_the_worker_and_the_job_completes(tmp_path, monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, f"notobject:lightgbm:1:{tmp_path / 'count'}")
    X, y, _ = make_survivors(300, seed=0)
    with WorkerPool(X, y, [(np.arange(200), np.arange(200, 300))], slots=ONE_CPU, scratch=tmp_path) as pool:
        pool.submit(TrialKey("lightgbm", 0), STARTS["lightgbm"][0], [0], seed=0)
        pool.dispatch()
        done = pool.next_done(timeout=120)
    assert done is not None and done.result["status"] == "complete", done and done.result
    assert int((tmp_path / "count").read_text()) == 2  # the bad answer, then the retry on a new worker


def test_a_scratch_folder_is_cleared_only_when_its_driver_is_gone(tmp_path):
    """Two drivers may share an out directory: one must not delete the other's search rows."""
    import socket
    import subprocess
    import sys

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    kept = tmp_path / f".pool-{host}-{live.pid}-abc"
    gone = [tmp_path / f".pool-{host}-{dead.pid}-def", tmp_path / ".pool-old"]
    elsewhere = tmp_path / f".pool-another-host-{dead.pid}-ghi"
    for folder in (kept, *gone, elsewhere):
        folder.mkdir()
    try:
        X, y, _ = make_survivors(100, seed=0)
        with WorkerPool(X, y, [(np.arange(50), np.arange(50, 100))], slots=ONE_CPU, scratch=tmp_path):
            pass
    finally:
        live.kill()
        live.wait()
    assert kept.is_dir() and elsewhere.is_dir()
    assert not any(folder.exists() for folder in gone)


def _retrain(pool: WorkerPool, tmp_path, X) -> dict:
    from trialfuse.transport.side_jobs import Retrain

    model = Retrain("lightgbm", STARTS["lightgbm"][0], 20, tmp_path / "model", seed=0)
    model.directory.mkdir()
    return pool.retrain([model], X[:10])[0]


def test_a_retrain_whose_worker_dies_runs_again_on_a_new_worker(tmp_path, monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, f"die:lightgbm:1:{tmp_path / 'count'}")
    X, y, _ = make_survivors(300, seed=0)
    with WorkerPool(X, y, [(np.arange(200), np.arange(200, 300))], slots=ONE_CPU, scratch=tmp_path) as pool:
        answer = _retrain(pool, tmp_path, X)
    assert answer["status"] == "complete", answer
    assert int((tmp_path / "count").read_text()) == 2  # died once, then trained on a restarted worker


def test_a_hung_retrain_ends_at_the_job_timeout(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv(faults.FAULT_ENV, "hang:lightgbm")
    X, y, _ = make_survivors(300, seed=0)
    started = time.monotonic()
    with WorkerPool(X, y, [(np.arange(200), np.arange(200, 300))], slots=ONE_CPU, scratch=tmp_path,
                    job_timeout=3) as pool:
        answer = _retrain(pool, tmp_path, X)
    assert answer["status"] == "error" and "timed out" in answer["error"], answer
    assert time.monotonic() - started < 30  # twice the job timeout, plus start-up


def test_a_worker_that_cannot_load_the_search_rows_says_why(tmp_path, monkeypatch):
    """Before: the failed load was ignored and every job then failed with KeyError: 'search'."""
    real = protocol.load_dataset
    monkeypatch.setattr(protocol, "load_dataset",
                        lambda path, folds, **kw: real(str(tmp_path / "gone.npz"), folds, **kw))
    X, y, _ = make_survivors(100, seed=0)
    with WorkerPool(X, y, [(np.arange(50), np.arange(50, 100))], slots=ONE_CPU, scratch=tmp_path) as pool:
        pool.submit(TrialKey("lightgbm", 0), STARTS["lightgbm"][0], [0], seed=0)
        pool.dispatch()
        done = pool.next_done(timeout=60)
    assert done is not None and done.result["status"] == "error"
    assert "could not load the search rows" in done.result["error"] and "gone.npz" in done.result["error"]


class GoneWorker(WorkerProcess):
    """A worker whose place is gone for good (a cluster node that died): it never starts."""

    def start(self) -> None:
        raise SlotGone("its node is gone")


class GpuPlacesGone:
    """A `contracts.WorkerFactory` whose GPU workers' places are gone; CPU workers are processes."""

    def __call__(self, env, dataset, slot, log):
        return (GoneWorker if slot.kind == "gpu" else WorkerProcess)(env, dataset, slot, log)

    def release(self, dataset):
        pass


gpu_places_gone = GpuPlacesGone()


def test_with_every_workers_place_gone_each_job_is_answered_at_once_and_none_waits_forever(tmp_path):
    X, y, _ = make_survivors(300, seed=0)
    folds = [(np.arange(0, 200), np.arange(200, 300))]
    with WorkerPool(X, y, folds, slots=ONE_CPU, scratch=tmp_path, new_worker=GoneWorker) as pool:
        pool.submit(TrialKey("lightgbm", 0), STARTS["lightgbm"][0], [0], seed=0)
        pool.dispatch()
        first = pool.next_done(timeout=60)
        pool.submit(TrialKey("lightgbm", 1), STARTS["lightgbm"][0], [0], seed=1)  # asked after: still answered
        pool.dispatch()
        second = pool.next_done(timeout=60)
    assert first is not None and second is not None, "a job waited for a worker that will never come"
    assert {first.result["error"], second.result["error"]} == {"every worker's place is gone"}


def test_a_family_whose_workers_places_are_all_gone_moves_to_the_workers_left(tmp_path):
    X, y, _ = make_survivors(300, seed=0)
    folds = [(np.arange(0, 200), np.arange(200, 300))]
    nn = {"hidden_layers": [8], "epochs": 3}
    with WorkerPool(X, y, folds, slots=[Slot(WorkerKind.GPU), Slot(WorkerKind.CPU)], scratch=tmp_path,
                    new_worker=gpu_places_gone) as pool:
        pool.submit(TrialKey("nn", 0), nn, [0], seed=0)
        pool.dispatch()
        answer = pool.next_done(timeout=120)
        devices = {t["device"] for t in pool.timeline}
    assert answer is not None and answer.result["status"] == "complete", answer and answer.result
    assert devices == {"cpu"}


def test_a_retrain_whose_workers_place_is_gone_is_done_by_another_worker(tmp_path):
    from trialfuse.transport.side_jobs import Retrain

    X, y, _ = make_survivors(300, seed=0)
    folds = [(np.arange(0, 200), np.arange(200, 300))]
    models = [Retrain("lightgbm", STARTS["lightgbm"][0], 20, tmp_path / f"model-{i}", seed=i, seconds=1.0)
              for i in range(2)]
    with WorkerPool(X, y, folds, slots=[Slot(WorkerKind.GPU), Slot(WorkerKind.CPU)], scratch=tmp_path,
                    new_worker=gpu_places_gone) as pool:
        pool._devices["lightgbm"] = "gpu"  # placed on the GPU worker before its node went
        answers = pool.retrain(models, X[:50])
    assert [a["status"] for a in answers] == ["complete", "complete"], answers


def test_an_explanation_with_no_time_left_answers_out_of_time_and_the_worker_goes_on(tmp_path):
    import json
    import time

    X, y, _ = make_survivors(300, seed=0)
    np.savez(tmp_path / "rows.npz", X=X, y=y)
    server = Server("cpu")
    server.handle(protocol.load_dataset(str(tmp_path / "rows.npz"), [(np.arange(200), np.arange(200, 300))]))
    model = tmp_path / "best_model"
    trained = server.handle(protocol.retrain("lightgbm", STARTS["lightgbm"][0], 20, str(model),
                                             str(tmp_path / "rows.npz"), 0, 1))[0]
    (model / "metadata.json").write_text(json.dumps({"family": "lightgbm", "model_file": trained["model_file"],
                                                     "feature_names": [f"x{i}" for i in range(X.shape[1])]}))
    late = server.handle(protocol.explain(str(model), str(tmp_path / "rows.npz"), 0, deadline=time.time() - 1))[0]
    assert late["status"] == protocol.OUT_OF_TIME and "spent before it began" in late["error"]
    on_time = server.handle(protocol.explain(str(model), str(tmp_path / "rows.npz"), 0, deadline=time.time() + 60))[0]
    assert on_time["status"] == "complete" and on_time["explanation"]["features"]


SLOW = {  # a fold of about a minute on the 6,000 rows below, if nothing stops it
    "lightgbm": {"learning_rate": 1e-3, "num_leaves": 255, "min_data_in_leaf": 2},  # 2,000 rounds of 255 leaves
    "nn": {**NN, "hidden_layers": [64, 64], "epochs": 3000, "early_stopping_patience": 3000, "batch_size": 256,
           "learning_rate": 1e-4},
}


@pytest.mark.parametrize("family", list(SLOW))
def test_a_decided_trials_fold_under_way_stops_without_a_deadline_too(family, tmp_path):
    """A trial pruned in a `--trials` run (no deadline): its fold under way stops within rounds or
    a few epochs (scratch.request_stop), where before it trained to its end for a verdict already
    given (the NN's, before its jobs carried the stop file too, also with a deadline)."""
    import time

    X, y, _ = make_survivors(8000, seed=0)
    folds = [(np.arange(0, 6000), np.arange(6000, 8000))]
    with WorkerPool(X, y, folds, slots=ONE_CPU, scratch=tmp_path) as pool:
        key = TrialKey(family, 0)
        pool.submit(key, SLOW[family], [0], seed=0)
        pool.dispatch()
        waited = time.monotonic()
        while not pool.progress(key)[1]:  # until a worker has taken the fold
            assert time.monotonic() - waited < 60
            time.sleep(0.05)
        time.sleep(1.0)
        pool.cancel(key)
        stopped = time.monotonic()
        done = pool.next_done(timeout=300)
    assert done.result["status"] == "error" and done.result.get("cut") and time.monotonic() - stopped < 10


def test_a_fused_nn_task_stops_once_every_trial_it_holds_is_decided(resident, tmp_path):
    """NN jobs trained together share one model: it stops (each answers `cut`) only when every
    one of its trials was decided; while one is still wanted, all train on. Before, a fused
    task ignored its stop files and trained to its end for verdicts already given."""
    server = Server("cpu")
    server.handle(resident)
    long = {**NN, "epochs": 200, "early_stopping_patience": 200}
    decided, wanted = tmp_path / "nn-0", tmp_path / "nn-1"
    decided.touch()
    jobs = [TrainJob("nn", long, fold, 1, trial=0, stop_file=str(decided)) for fold in (0, 1)]
    jobs += [TrainJob("nn", long, fold, 2, trial=1, stop_file=str(wanted)) for fold in (0, 1)]
    answers = server.handle(protocol.train_batch(jobs, Fuse("on")))
    assert [a["status"] for a in answers] == ["complete"] * 4  # trial 1 still wanted: nothing stops
    wanted.touch()
    answers = server.handle(protocol.train_batch(jobs, Fuse("on")))
    assert all(a["status"] == "error" and a.get("cut") for a in answers), answers


@pytest.fixture(scope="module")
def resident_5000(tmp_path_factory):
    """5,000 rows, one fold of 4,000 training rows (more than a tree fold's train loss reads),
    and the target."""
    X, y, _ = make_survivors(5000, seed=0)
    path = tmp_path_factory.mktemp("rows_5000") / "search_rows.npz"
    np.savez(path, X=X, y=y)
    return protocol.load_dataset(str(path), [(np.arange(4000), np.arange(4000, 5000))]), y


def _counting_predict(monkeypatch, then=None) -> list[tuple[int, np.ndarray]]:
    """LightGBM's predict, keeping the rows and the output of each call (and calling `then` after each)."""
    from trialfuse.engine.families import lightgbm_trees

    calls, predict = [], lightgbm_trees.predict

    def counted(model, X):
        calls.append((len(X), out := predict(model, X)))
        if then is not None:
            then()
        return out

    monkeypatch.setattr(lightgbm_trees, "predict", counted)
    return calls


def _train_one_lightgbm(resident, **job) -> dict:
    server = Server("cpu")
    server.handle(resident)
    return server.handle(protocol.train_batch([TrainJob("lightgbm", STARTS["lightgbm"][0], 0, 1, trial=0, threads=1,
                                                        **job)], Fuse("off")))[0]


def test_a_tree_folds_train_loss_is_read_on_a_bounded_sample_of_its_rows(resident_5000, monkeypatch):
    """Predicting every training row of a model with thousands of trees cost more than its fit
    (a 60 s run took 95); the train loss is read on TRAIN_LOSS_ROWS of them, the score on every
    validation row."""
    from trialfuse.engine.scores import TRAIN_LOSS_ROWS, train_loss_rows
    from trialfuse.task import NUMBERS

    resident, y = resident_5000
    calls = _counting_predict(monkeypatch)
    answer = _train_one_lightgbm(resident, predictions=True)
    assert answer["status"] == "complete" and [rows for rows, _ in calls] == [1000, TRAIN_LOSS_ROWS]
    assert len(answer["val_predictions"]) == 1000
    sample = train_loss_rows(4000)
    assert answer["train_loss"] == pytest.approx(NUMBERS.loss(y[:4000][sample], calls[1][1]), rel=1e-12)


def test_a_fold_decided_while_it_predicts_answers_cut_at_once(resident_5000, tmp_path, monkeypatch):
    """Its trial decided after the fit, while it predicted its validation rows: the fold answers
    `cut` without predicting its training rows, where before it went on for a verdict already given."""
    stop = tmp_path / "lightgbm-0"
    calls = _counting_predict(monkeypatch, then=stop.touch)
    answer = _train_one_lightgbm(resident_5000[0], stop_file=str(stop))
    assert answer["status"] == "error" and answer.get("cut") and [rows for rows, _ in calls] == [1000]


def test_a_fold_whose_deadline_passes_after_its_last_round_predicts_nothing(resident_5000, monkeypatch):
    """The deadline passed between the fit's last round and the predictions: `cut`, nothing
    predicted (with thousands of trees the validation rows alone take seconds)."""
    import time

    from trialfuse.engine.families import lightgbm_trees

    fit, deadline = lightgbm_trees.fit, time.time() + 30

    def fit_then_overrun(*args, **kwargs):
        fitted = fit(*args, **{**kwargs, "deadline": None})
        monkeypatch.setattr(time, "time", lambda: deadline + 1)  # as if its last round had ended past it
        return fitted

    monkeypatch.setattr(lightgbm_trees, "fit", fit_then_overrun)
    calls = _counting_predict(monkeypatch)
    answer = _train_one_lightgbm(resident_5000[0], deadline=deadline)
    assert answer["status"] == "error" and answer.get("cut") and calls == []
