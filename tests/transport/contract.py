"""The worker protocol's contract, as one suite any transport runs (see transport/protocol.py).

A transport's test class subclasses `WorkerContract` and defines `start_worker()`, which
returns an object with `ready` (the first answer), `ask(command, answers)` returning that
many answer dicts, and `close()`; conftest.py makes it the class's `worker` fixture. The
subprocess worker and the in-process server run it today; a Ray actor transport
subclasses it the same way.
"""
from __future__ import annotations

import numpy as np
import pytest

from trialfuse.fuse import Fuse
from trialfuse.survivors import make_survivors
from trialfuse.transport import protocol
from trialfuse.transport.protocol import TrainJob

ANSWER_KEYS = {"status", "trial", "fold", "family", "score", "r2", "val_loss", "train_loss", "best_rounds",
               "rounds_run", "duration", "device", "batch_mode", "fused_batch_size"}
OPTIONAL_KEYS = {"wall_seconds"}  # a fused NN fold: its whole batch's time (`duration` is its share)
PREDICTION_KEYS = {"val_predictions"}  # only for a job that asked for them
NN = {"hidden_layers": [16, 8], "epochs": 12, "learning_rate": 1e-2}
LIGHTGBM = {"num_leaves": 4, "learning_rate": 0.1}


class WorkerContract:
    @staticmethod
    def start_worker():
        raise NotImplementedError("a transport's test class says how to start its worker")

    def test_ready_names_its_device(self, worker):
        assert worker.ready["status"] == protocol.READY and worker.ready["device"] == "cpu"

    def test_load_dataset_keeps_the_rows_resident(self, worker, resident):
        assert worker.ask(resident, 1) == [{"status": "loaded", "dataset": "search", "rows": 300, "folds": 2}]

    def test_train_batch_answers_every_job_in_input_order(self, worker, resident):
        worker.ask(resident, 1)
        jobs = [TrainJob("nn", NN, 1, 7, trial=3), TrainJob("lightgbm", LIGHTGBM, 0, 5, trial=4, threads=1),
                TrainJob("nn", NN, 0, 7, trial=3)]
        answers = worker.ask(protocol.train_batch(jobs, Fuse("on")), 3)
        assert [(a["trial"], a["fold"], a["family"]) for a in answers] == [(3, 1, "nn"), (4, 0, "lightgbm"),
                                                                          (3, 0, "nn")]
        for answer in answers:
            assert answer["status"] == "complete" and ANSWER_KEYS <= set(answer) <= ANSWER_KEYS | OPTIONAL_KEYS, answer
            assert 1 <= answer["best_rounds"] <= answer["rounds_run"] and np.isfinite(answer["r2"])
        assert answers[0]["batch_mode"] == "fused" and answers[0]["fused_batch_size"] == 2
        assert answers[1]["batch_mode"] == "serial"

    def test_a_job_that_asks_gets_its_validation_predictions(self, worker, resident):
        from sklearn.metrics import r2_score

        worker.ask(resident, 1)
        jobs = [TrainJob("nn", NN, 0, 7, trial=1, predictions=True), TrainJob("nn", NN, 1, 7, trial=1),
                TrainJob("lightgbm", LIGHTGBM, 1, 5, trial=2, threads=1, predictions=True)]
        answers = worker.ask(protocol.train_batch(jobs, Fuse("on")), 3)
        assert "val_predictions" not in answers[1] and ANSWER_KEYS <= set(answers[1]) <= ANSWER_KEYS | OPTIONAL_KEYS
        X, y, _ = make_survivors(300, seed=0)
        for answer, val in ((answers[0], np.arange(200, 300)), (answers[2], np.arange(0, 100))):
            assert set(answer) <= ANSWER_KEYS | OPTIONAL_KEYS | PREDICTION_KEYS
            predictions = np.asarray(answer["val_predictions"])
            assert predictions.shape == (100,)  # one per validation row, in the fold's order
            assert r2_score(y[val], predictions) == pytest.approx(answer["r2"], abs=1e-5)

    def test_a_job_with_train_rows_trains_on_a_sample_and_scores_every_validation_row(self, worker, resident):
        """A run's last-chance trial, on a table too big for its budget: at most `train_rows` of
        the fold's training rows (LightGBM's 20 rows: one leaf, one value), all its validation rows."""
        worker.ask(resident, 1)
        jobs = [TrainJob("lightgbm", LIGHTGBM, 0, 5, trial=1, threads=1, predictions=True, train_rows=20),
                TrainJob("lightgbm", LIGHTGBM, 0, 5, trial=2, threads=1, predictions=True),
                TrainJob("nn", NN, 0, 7, trial=3, train_rows=20), TrainJob("nn", NN, 0, 7, trial=4)]
        sampled, whole, nn_sampled, nn_whole = worker.ask(protocol.train_batch(jobs, Fuse("off")), 4)
        assert len(sampled["val_predictions"]) == len(whole["val_predictions"]) == 100
        assert len(set(sampled["val_predictions"])) == 1 < len(set(whole["val_predictions"]))
        assert nn_sampled["status"] == nn_whole["status"] == "complete" and nn_sampled["r2"] != nn_whole["r2"]

    def test_a_failing_job_is_an_answer_and_the_others_complete(self, worker, resident):
        worker.ask(resident, 1)
        jobs = [TrainJob("lightgbm", LIGHTGBM, 9, 0, trial=1, threads=1),  # no fold 9
                TrainJob("catboost_typo", {}, 0, 0, trial=2), TrainJob("lightgbm", LIGHTGBM, 1, 0, trial=3, threads=1)]
        answers = worker.ask(protocol.train_batch(jobs, Fuse()), 3)
        assert [a["status"] for a in answers] == ["error", "error", "complete"]
        assert [(a["trial"], a["fold"]) for a in answers] == [(1, 9), (2, 0), (3, 1)]
        assert "catboost_typo" in answers[1]["error"] and "\n" not in answers[0]["error"]

    def test_a_batch_that_cannot_be_read_still_answers_once_per_job(self, worker, resident):
        worker.ask(resident, 1)
        good = TrainJob("lightgbm", LIGHTGBM, 0, 0, trial=1, threads=1).to_json()
        command = {"command": protocol.TRAIN_BATCH, "jobs": [good, {**good, "trial": 2, "fold": "first"}]}
        answers = worker.ask(command, 2)
        assert [a["status"] for a in answers] == ["error", "error"] and [a["trial"] for a in answers] == [1, 2]
        assert worker.ask(resident, 1)[0]["status"] == "loaded"  # and the worker goes on

    def test_an_unknown_command_is_an_error_and_the_worker_goes_on(self, worker, resident):
        assert "unknown command" in worker.ask({"command": "fly"}, 1)[0]["error"]
        assert worker.ask(resident, 1)[0]["status"] == "loaded"

    def test_retrain_saves_natively_and_scores_the_saved_model(self, worker, resident, tmp_path):
        worker.ask(resident, 1)
        score_path = tmp_path / "score.npz"
        np.savez(score_path, X=make_survivors(20, seed=1)[0])
        answer = worker.ask(protocol.retrain("lightgbm", LIGHTGBM, 15, str(tmp_path / "model"), str(score_path),
                                             0, 1), 1)[0]
        assert answer["status"] == "complete" and answer["rounds"] == 15
        assert (tmp_path / "model" / answer["model_file"]).is_file() and len(answer["predictions"]) == 20

    def test_a_retrain_stops_at_its_deadline_or_trains_on_a_sample(self, worker, resident, tmp_path):
        """`--refit` of a last-chance trial's model: on every row until a deadline (with none it
        ran minutes past --timeout on a million rows), else on a sample as its folds had
        (LightGBM on 20 rows: one value)."""
        import time

        worker.ask(resident, 1)
        score_path = tmp_path / "score.npz"
        np.savez(score_path, X=make_survivors(20, seed=1)[0])
        sampled, whole, late = (worker.ask(protocol.retrain("lightgbm", LIGHTGBM, 15, str(tmp_path / name),
                                                            str(score_path), 0, 1, train_rows=rows, deadline=deadline),
                                           1)[0]
                                for name, rows, deadline in (("a", 20, None), ("b", None, time.time() + 600),
                                                             ("c", None, time.time() - 1)))
        assert (sampled["train_rows"], whole["train_rows"]) == (20, 300)
        assert len(set(sampled["predictions"])) == 1 < len(set(whole["predictions"]))
        assert late["status"] == "error" and late["cut"] and not (tmp_path / "c").exists()

    def test_a_class_dataset_is_trained_scored_and_retrained_as_classes(self, worker, resident_classes, tmp_path):
        from sklearn.metrics import log_loss

        command, y, task = resident_classes
        assert worker.ask(command, 1)[0]["status"] == "loaded"
        jobs = [TrainJob("nn", NN, 0, 7, trial=1, predictions=True), TrainJob("nn", NN, 1, 7, trial=1),
                TrainJob("lightgbm", LIGHTGBM, 1, 5, trial=2, threads=1, predictions=True)]
        answers = worker.ask(protocol.train_batch(jobs, Fuse("on")), 3)
        assert [a["status"] for a in answers] == ["complete"] * 3, answers
        for answer, val in ((answers[0], np.arange(200, 300)), (answers[2], np.arange(0, 100))):
            probabilities = np.asarray(answer["val_predictions"])
            assert probabilities.shape == (100, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
            assert answer["score"] == pytest.approx(-log_loss(y[val], probabilities), abs=1e-4)
            assert answer["val_loss"] == pytest.approx(-answer["score"]) and np.isnan(answer["r2"])
        score_path = tmp_path / "score.npz"
        np.savez(score_path, X=make_survivors(20, seed=1)[0])
        retrained = worker.ask(protocol.retrain("lightgbm", LIGHTGBM, 15, str(tmp_path / "model"), str(score_path),
                                                0, 1), 1)[0]
        assert np.asarray(retrained["predictions"]).shape == (20, 3)

    def test_shutdown_answers(self, worker):
        assert worker.ask(protocol.shutdown(), 1) == [{"status": "shutdown"}]
