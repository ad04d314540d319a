"""The pool's retrain: several models at once over its workers, each answered in input order."""
from __future__ import annotations

import numpy as np

from trialfuse.survivors import make_survivors
from trialfuse.transport.placement import Slot
from trialfuse.transport.process_pool import Retrain, WorkerPool


def test_models_retrain_at_once_on_every_worker_and_a_failure_is_its_own_answer(tmp_path):
    X, y, _ = make_survivors(400, seed=0)
    folds = [(np.arange(200, 400), np.arange(200)), (np.arange(200), np.arange(200, 400))]
    models = [Retrain("lightgbm", {"num_leaves": 4}, 20, tmp_path / "a", 0, seconds=1.0),
              Retrain("xgboost", {"max_depth": 2}, 20, tmp_path / "b", 0, seconds=3.0),
              Retrain("lightgbm", {"num_leaves": "many"}, 20, tmp_path / "c", 0),  # not a number: fails
              Retrain("catboost", {"depth": 3}, 20, tmp_path / "d", 0, seconds=2.0)]
    with WorkerPool(X, y, folds, slots=[Slot("cpu", "", 1), Slot("cpu", "", 1)], scratch=tmp_path) as pool:
        answers = pool.retrain(models, X[:30])
        retrains = [task for task in pool.timeline if task["what"] == "retrain"]
    assert [a["status"] for a in answers] == ["complete", "complete", "error", "complete"]
    for model, answer in zip(models, answers, strict=True):
        if answer["status"] == "complete":
            assert (model.directory / answer["model_file"]).is_file() and len(answer["predictions"]) == 30
    assert {task["worker"] for task in retrains} == {0, 1}  # spread over both workers
