"""`trialfuse worker`: the source system's JSON-lines contract, its smoke tests, and the extensions."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

WORKER = [sys.executable, "-m", "trialfuse.cli", "worker"]  # what `trialfuse worker` runs


def start_worker() -> subprocess.Popen:
    return subprocess.Popen(WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def send(p: subprocess.Popen, payload) -> None:
    p.stdin.write((payload if isinstance(payload, str) else json.dumps(payload)) + "\n")
    p.stdin.flush()


def read(p: subprocess.Popen) -> dict:
    return json.loads(p.stdout.readline())


@pytest.fixture
def fold_npz(tmp_path):
    """The source smoke tests' data: 200 x 62 noise, split 160/40."""
    X = np.random.randn(200, 62).astype(np.float32)
    y = np.random.randn(200).astype(np.float32)
    path = tmp_path / "smoke.npz"
    np.savez(path, X_train=X[:160], y_train=y[:160], X_val=X[160:], y_val=y[160:])
    return path


def test_smoke_1_boots_and_shuts_down_clean():
    proc = subprocess.run(WORKER, input='{"command":"shutdown"}\n', capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["status"] == "ready" and lines[-1]["status"] == "shutdown"


def test_smoke_2_ready_line_then_shutdown_line():
    p = start_worker()
    assert read(p)["status"] == "ready"
    send(p, {"command": "shutdown"})
    assert read(p)["status"] == "shutdown"
    assert p.wait(timeout=60) == 0


def test_smoke_3_single_serial_trial(fold_npz):
    job = {"command": "train", "X_train_path": str(fold_npz), "params": {"hidden_layers": [64, 32],
           "learning_rate": 0.001, "epochs": 5, "dropout": 0.3}, "trial_number": 0, "fold_idx": 0,
           "normalize_features": True, "use_leaky_relu": True, "batch_mode": "full"}
    p = start_worker()
    read(p)
    send(p, job)
    result = read(p)
    send(p, {"command": "shutdown"})
    read(p)
    assert p.wait(timeout=60) == 0
    assert result["status"] == "complete", result
    for key in ("r2", "val_mse", "train_mse", "duration", "device", "trial_number", "fold_idx"):
        assert key in result
    assert result["trial_number"] == 0 and result["fold_idx"] == 0 and result["epochs_run"] <= 5


def test_passed_through_fields_are_never_overwritten(fold_npz):
    """A train command's trial_number and fold_idx come back as sent, for the NN (whose scores
    carry a fold of their own) and a tree family alike."""
    p = start_worker()
    read(p)
    answers = []
    for family, number, fold in (("neural_net", 7, 3), ("lightgbm", 8, 4)):
        send(p, {"command": "train", "X_train_path": str(fold_npz), "model_type": family, "trial_number": number,
                 "fold_idx": fold, "params": {"hidden_layers": [8], "epochs": 2} if family == "neural_net" else {}})
        answers.append(read(p))
    send(p, {"command": "shutdown"})
    read(p)
    assert p.wait(timeout=60) == 0
    assert [(a["status"], a["trial_number"], a["fold_idx"]) for a in answers] == [("complete", 7, 3),
                                                                                  ("complete", 8, 4)], answers


def test_smoke_4_train_batch_answers_each_job_in_order(fold_npz):
    params = {"hidden_layers": [64, 32], "learning_rate": 0.001, "epochs": 50, "dropout": 0.3, "gradient_clip": 1.0,
              "early_stopping_patience": 15}
    jobs = [{"command": "train", "X_train_path": str(fold_npz), "params": params, "trial_number": i, "fold_idx": i,
             "normalize_features": True, "use_leaky_relu": True, "batch_mode": "full"} for i in range(2)]
    p = start_worker()
    read(p)
    send(p, {"command": "train_batch", "jobs": jobs})
    results = [read(p) for _ in range(2)]
    send(p, {"command": "shutdown"})
    read(p)
    assert p.wait(timeout=60) == 0
    assert [r["status"] for r in results] == ["complete", "complete"]
    assert [r["trial_number"] for r in results] == [0, 1]
    assert all(r["batch_mode"] in ("fused", "serial") and 1 <= r["epochs_run"] <= 50 for r in results)


def test_errors_are_answers_and_the_worker_goes_on(fold_npz, tmp_path):
    p = start_worker()
    read(p)
    send(p, "this is not json")
    assert read(p)["status"] == "error"
    send(p, {"command": "train", "X_train_path": str(tmp_path / "missing.npz"), "params": {}, "trial_number": 7,
             "fold_idx": 1})
    failed = read(p)
    assert failed["status"] == "error" and failed["trial_number"] == 7 and "missing.npz" in failed["error"]
    send(p, {"command": "fly"})
    assert "unknown command" in read(p)["error"]
    good = {"X_train_path": str(fold_npz), "params": {"hidden_layers": [8, 8], "epochs": 3}, "trial_number": 1}
    send(p, {"command": "train_batch", "jobs": [{**good, "trial_number": 0, "X_train_path": "nope.npz"}, good]})
    batch = [read(p), read(p)]
    assert [r["status"] for r in batch] == ["error", "complete"]
    send(p, {"command": "shutdown"})
    assert read(p)["status"] == "shutdown" and p.wait(timeout=60) == 0


def test_resident_dataset_and_fold_jobs_for_nn_and_trees(tmp_path):
    from trialfuse.survivors import make_survivors

    X, y, _ = make_survivors(400, seed=0)
    np.savez(tmp_path / "table.npz", X=X, y=y)
    folds = [{"train": list(range(0, 300)), "val": list(range(300, 400))},
             {"train": list(range(100, 400)), "val": list(range(0, 100))}]
    p = start_worker()
    read(p)
    send(p, {"command": "load_dataset", "dataset": "s", "path": str(tmp_path / "table.npz"), "folds": folds})
    assert read(p) == {"status": "loaded", "dataset": "s", "rows": 400, "folds": 2}
    nn = {"dataset": "s", "params": {"hidden_layers": [16, 8], "epochs": 20}}
    send(p, {"command": "train_batch", "jobs": [{**nn, "fold": 0, "trial_number": 3}, {**nn, "fold": 1,
                                                                                         "trial_number": 3}]})
    nn_results = [read(p), read(p)]
    assert [r["fold_idx"] for r in nn_results] == [0, 1] and all(r["status"] == "complete" for r in nn_results)
    send(p, {"command": "train", "dataset": "s", "fold": 1, "family": "lightgbm",
             "params": {"num_leaves": 4, "learning_rate": 0.1}, "threads": 1, "trial_number": 9})
    tree = read(p)
    assert tree["status"] == "complete" and tree["model_type"] == "lightgbm" and tree["fold_idx"] == 1
    send(p, {"command": "shutdown"})
    read(p)
    assert p.wait(timeout=60) == 0


def test_a_legacy_batch_refused_as_a_whole_answers_each_job_with_its_trial_number(fold_npz):
    job = {"X_train_path": str(fold_npz), "params": {"hidden_layers": [8, 8], "epochs": 3}}
    p = start_worker()
    read(p)
    refused = {**job, "trial_number": 5, "fold_idx": 1, "normalize_features": False}
    send(p, {"command": "train_batch", "jobs": [{**job, "trial_number": 4, "fold_idx": 0}, refused]})
    answers = [read(p), read(p)]
    send(p, {"command": "shutdown"})
    assert read(p)["status"] == "shutdown" and p.wait(timeout=60) == 0
    assert [(a["status"], a["trial_number"], a["fold_idx"]) for a in answers] == [("error", 4, 0), ("error", 5, 1)]
    assert "normalize_features" in answers[1]["error"]


def test_the_sources_plain_forms_read_as_todays():
    """A one-job `train` and a true / false `fuse` (the source's forms) become today's
    `train_batch` and Fuse; today's commands pass unchanged."""
    from trialfuse.fuse import Fuse
    from trialfuse.transport.source_dialect import plain

    job = {"family": "lightgbm", "params": {}, "fold": 0}
    assert plain({"command": "train", **job}) == {"command": "train_batch", "jobs": [{"command": "train", **job}]}
    for sent, mode in ((True, "on"), (False, "off"), ("auto", "auto")):
        command = plain({"command": "train_batch", "fuse": sent, "jobs": [job]})
        assert Fuse.from_json(command["fuse"]) == Fuse(mode)
    today = {"command": "train_batch", "fuse": Fuse("on", 8).to_json(), "jobs": [job]}
    assert plain(today) is today
