"""Workers as Ray actors (`--ray`): the worker contract, a whole run equal to the local one,
and an actor killed in the middle of a task. One local Ray instance for the module, with two
declared GPUs (Ray's resources are logical: their actors train on the CPU)."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import ray
from contract import WorkerContract

from trialfuse.driver.options import RunOptions
from trialfuse.driver.run import SilentReporter, compare_models
from trialfuse.survivors import BAND_TARGET, make_survivors, write_survivors
from trialfuse.transport import protocol
from trialfuse.transport.fold_queue import TrialKey
from trialfuse.transport.placement import Slot, WorkerKind
from trialfuse.transport.process_pool import WorkerPool
from trialfuse.transport.ray_workers import RayWorker, cluster_slots

pytestmark = pytest.mark.slow  # a Ray instance: `pytest -m "not slow"` leaves it out


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # "local": a new instance even where an earlier `ray start` or cluster left its address
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False,
             object_store_memory=200 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


class RayActor:
    """A RayWorker driven as the contract drives a worker."""

    def __init__(self, tmp=None):
        import tempfile
        from pathlib import Path

        self.tmp = Path(tempfile.mkdtemp())
        X, y, _ = make_survivors(50, seed=1)
        np.savez(self.tmp / "rows.npz", X=X, y=y)
        rows = protocol.load_dataset(str(self.tmp / "rows.npz"), [(np.arange(25), np.arange(25, 50))])
        self.worker = RayWorker({}, rows, Slot(WorkerKind.GPU, "0"))
        self.worker.start()
        self.ready = {k: v for k, v in self.worker.ready.items() if k in ("status", "device")}

    def ask(self, command: dict, answers: int) -> list[dict]:
        return json.loads(json.dumps(self.worker.request(json.loads(json.dumps(command)), answers, 120),
                                     default=float))

    def close(self) -> None:
        self.worker.kill()


class TestRayActor(WorkerContract):
    start_worker = RayActor


def test_the_cluster_gives_one_worker_per_gpu_then_one_per_cpu_left():
    slots = cluster_slots()
    assert [s.kind for s in slots] == ["gpu", "gpu"] and {s.threads for s in slots} == {1}
    assert len({s.node for s in slots}) == 1 and all(s.label.startswith("cuda:") and " on node " in s.label
                                                     for s in slots)


def test_a_run_on_ray_gives_the_same_trials_and_scores_as_on_local_processes(tmp_path):
    """A class table with a text column (the task and the category columns travel to the actors
    with the rows), searched alike on Ray and on local processes."""
    import pandas as pd

    data = write_survivors(tmp_path / "rows.csv", rows=600, seed=0, bands=2)
    table = pd.read_csv(data)
    table["region"] = np.where(table.iloc[:, 3] > 0.5, "north", "south")
    table.to_csv(data, index=False)

    heard: list[str] = []  # what the Ray run said, in order

    class Recording(SilentReporter):
        def stage(self, message: str) -> None:
            heard.append(message)

        def trial_finished(self, result) -> None:
            heard.append(f"trial of {result.family}")

    def run(**where) -> dict:
        opts = RunOptions(data=data, target=BAND_TARGET, models=["lightgbm", "nn"], trials=3, folds=3,
                          out=tmp_path / ("ray" if where else "local"), explain=False, **where)
        return compare_models(opts, Recording() if where else None).to_json()

    local, on_ray = run(), run(ray="local")
    assert on_ray["task"]["kind"] == "binary" and on_ray["holdout_metrics"]["model"]["roc_auc"] > 0.6
    assert on_ray["device"] == "ray: 1 node, 2 gpu + 0 cpu" and on_ray["workers"] == 2
    for family in ("lightgbm", "nn"):
        a, b = local["families"][family], on_ray["families"][family]
        assert (a["trials_complete"], a["trials_pruned"]) == (b["trials_complete"], b["trials_pruned"]) == (3, 0)
        tolerance = 0 if family == "lightgbm" else 1e-6  # the NN: float32 on either side, one at a time
        assert b["cv_score_mean"] == pytest.approx(a["cv_score_mean"], abs=tolerance)
    assert on_ray["holdout_score"] == pytest.approx(local["holdout_score"], abs=1e-6)
    tasks = json.loads((tmp_path / "ray" / "timeline.json").read_text())["tasks"]
    assert {t["device"].split(" on node ")[0] for t in tasks} <= {"cuda:0", "cuda:1"}  # which node ran what
    # Ray's GPUs here are declared, and torch is a CPU build: the run says where its GPU work really ran
    blind = [w for w in on_ray["warnings"] if "found no GPU through torch" in w]
    assert len(blind) == 1 and blind[0].startswith("2 GPU workers on Ray node ")
    assert heard.index(blind[0]) < heard.index("trial of lightgbm")  # said before the search trains
    assert not any("found no GPU" in w for w in local["warnings"])


def test_an_actor_killed_mid_task_is_started_again_and_its_task_sent_once_more(tmp_path):
    X, y, _ = make_survivors(3000, seed=0)
    folds = [(np.arange(0, 2000), np.arange(2000, 3000))]
    slow_nn = {"hidden_layers": [256, 256], "epochs": 200, "early_stopping_patience": 200,  # about 4 s a training
               "learning_rate": 1e-3}
    with WorkerPool(X, y, folds, slots=[Slot(WorkerKind.GPU, "0")], scratch=tmp_path, new_worker=RayWorker) as pool:
        worker = pool._all[0]
        pool.submit(TrialKey("nn", 0), slow_nn, [0], seed=0, diagonal=False)
        pool.dispatch()
        deadline = time.monotonic() + 120
        while pool.activity()[0][1] == "idle" or worker.actor is None or not worker.ready:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first_pid = worker.ready["pid"]
        time.sleep(1.0)  # in the middle of its training
        threading.Thread(target=ray.kill, args=(worker.actor,), kwargs={"no_restart": True}).start()
        answer = pool.next_done(timeout=300)
        assert answer is not None and answer.result["status"] == "complete", answer.result
        assert worker.ready["pid"] != first_pid  # a new actor ran it


def test_an_actor_reads_a_saved_model_directory_sent_with_the_call_not_from_the_drivers_disk(tmp_path):
    """No shared disk: the explain command's model directory travels with it, layout kept; the
    actor explains from its copy even once the driver's is gone."""
    import shutil

    from trialfuse.catalog import STARTS
    from trialfuse.transport.ray_host import Host
    from trialfuse.transport.shipped_files import input_files

    X, y, _ = make_survivors(300, seed=0)
    np.savez(tmp_path / "rows.npz", X=X, y=y)
    host = Host()
    host.handle(protocol.load_dataset(str(tmp_path / "rows.npz"), [(np.arange(200), np.arange(200, 300))]),
                input_files({"path": str(tmp_path / "rows.npz")}))
    retrain = protocol.retrain("lightgbm", STARTS["lightgbm"][0], 20, str(tmp_path / "model"),
                               str(tmp_path / "rows.npz"), 0, 1)
    answers, written = host.handle(retrain, input_files(retrain))
    assert answers[0]["status"] == "complete" and str(tmp_path / "model") in written
    model = tmp_path / "best_model"
    for name, data in written[str(tmp_path / "model")].items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_bytes(data)
    (model / "metadata.json").write_text(json.dumps({"family": "lightgbm", "model_file": answers[0]["model_file"],
                                                     "feature_names": [f"x{i}" for i in range(X.shape[1])]}))
    explain = protocol.explain(str(model), str(tmp_path / "rows.npz"), 0)
    sent = input_files(explain)
    shutil.rmtree(model)
    answer = host.handle(explain, sent)[0][0]
    assert str(model) in sent and isinstance(sent[str(model)], dict)
    assert answer["status"] == "complete", answer


def test_screened_fold_models_travel_with_the_columns_they_read(tmp_path):
    """A wide table's last-chance fold models read some columns only (`<name>-columns.json` beside
    each): served on another node, each went without its columns file and read every column."""
    import shutil

    from trialfuse.engine.families import family_module
    from trialfuse.transport.ray_host import Host
    from trialfuse.transport.shipped_files import input_files

    X, y, _ = make_survivors(300, seed=0)
    np.savez(tmp_path / "rows.npz", X=X, y=y)
    module = family_module("lightgbm")
    kept, expected = [], []
    for k in range(2):  # two fold models, as a run keeps them: <family>-<trial>/fold-<k>/model.txt
        fitted = module.fit({"screen": 10, "learning_rate": 0.2}, X[k::2], y[k::2], rounds=20)
        folder = tmp_path / "oof" / "lightgbm-4" / f"fold-{k}"
        folder.mkdir(parents=True)
        kept.append(str(folder / module.save(fitted.model, folder)))
        expected.append(module.predict(fitted.model, X))
    host = Host()
    host.handle(protocol.load_dataset(str(tmp_path / "rows.npz"), [(np.arange(200), np.arange(200, 300))]),
                input_files({"path": str(tmp_path / "rows.npz")}))
    serve = protocol.retrain("lightgbm", {}, None, str(tmp_path / "best"), str(tmp_path / "rows.npz"), 0, 1,
                             fold_files=kept)
    sent = input_files(serve)
    shutil.rmtree(tmp_path / "oof")  # no shared disk
    answers, written = host.handle(serve, sent)
    assert answers[0]["status"] == "complete", answers[0]
    np.testing.assert_allclose(answers[0]["predictions"], np.mean(expected, axis=0), rtol=1e-12)
    assert sorted(written[str(tmp_path / "best")]) == ["fold-0-columns.json", "fold-0.txt", "fold-1-columns.json",
                                                       "fold-1.txt"]
