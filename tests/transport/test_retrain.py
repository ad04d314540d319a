"""The pool's retrain: several models at once over its workers, each answered in input order."""
from __future__ import annotations

import numpy as np

from trialfuse.survivors import make_survivors
from trialfuse.transport.fold_queue import TrialKey
from trialfuse.transport.placement import Slot, WorkerKind
from trialfuse.transport.process_pool import WorkerPool
from trialfuse.transport.side_jobs import Retrain


def test_models_retrain_at_once_on_every_worker_and_a_failure_is_its_own_answer(tmp_path):
    X, y, _ = make_survivors(400, seed=0)
    folds = [(np.arange(200, 400), np.arange(200)), (np.arange(200), np.arange(200, 400))]
    models = [Retrain("lightgbm", {"num_leaves": 4}, 20, tmp_path / "a", 0, seconds=1.0),
              Retrain("xgboost", {"max_depth": 2}, 20, tmp_path / "b", 0, seconds=3.0),
              Retrain("lightgbm", {"num_leaves": "many"}, 20, tmp_path / "c", 0),  # not a number: fails
              Retrain("catboost", {"depth": 3}, 20, tmp_path / "d", 0, seconds=2.0)]
    two_cpus = [Slot(WorkerKind.CPU, "", 1)] * 2
    with WorkerPool(X, y, folds, slots=two_cpus, scratch=tmp_path) as pool:
        answers = pool.retrain(models, X[:30])
        retrains = [task for task in pool.timeline if task["what"] == "retrain"]
    assert [a["status"] for a in answers] == ["complete", "complete", "error", "complete"]
    for model, answer in zip(models, answers, strict=True):
        if answer["status"] == "complete":
            assert (model.directory / answer["model_file"]).is_file() and len(answer["predictions"]) == 30
    assert {task["worker"] for task in retrains} == {0, 1}  # spread over both workers


def test_a_search_keeps_each_tree_folds_model_and_serving_them_predicts_their_mean(tmp_path):
    """--no-refit: the fold models the search trained are saved where asked, and serving them
    copies them under the model's directory and predicts the mean of the K models read back."""
    import lightgbm as lgb

    X, y, _ = make_survivors(400, seed=0)
    folds = [(np.arange(200, 400), np.arange(200)), (np.arange(200), np.arange(200, 400))]
    kept = tmp_path / "kept"
    with WorkerPool(X, y, folds, slots=[Slot(WorkerKind.CPU, "", 1)], scratch=tmp_path, keep_models=kept) as pool:
        pool.submit(TrialKey("lightgbm", 3), {"num_leaves": 4}, [0, 1], seed=0)
        pool.dispatch()
        answers = [pool.next_done(timeout=60) for _ in range(2)]
        files = [kept / "lightgbm-3" / f"fold-{k}" / "model.txt" for k in range(2)]
        served = pool.retrain([Retrain("lightgbm", {"num_leaves": 4}, None, tmp_path / "best", 0,
                                       fold_files=files)], X[:30])[0]
        said = [task["what"] for task in pool.timeline]
    assert all(a.result["status"] == "complete" and a.result["model_file"] == "model.txt" for a in answers)
    assert served["status"] == "complete" and served["model_files"] == ["fold-0.txt", "fold-1.txt"]
    assert said[-1] == "save" and "retrain" not in said  # nothing trained: the timeline called it "retrain"
    models = [lgb.Booster(model_file=str(tmp_path / "best" / name)) for name in served["model_files"]]
    expected = (models[0].predict(X[:30]) + models[1].predict(X[:30])) / 2
    assert np.allclose(served["predictions"], expected, rtol=0, atol=1e-12)
    for k, fold in enumerate(folds):  # the kept model is the fold's: it reproduces its validation score
        booster = lgb.Booster(model_file=str(files[k]))
        r2 = 1 - np.mean((booster.predict(X[fold[1]]) - y[fold[1]]) ** 2) / np.var(y[fold[1]])
        result = next(a.result for a in answers if a.job.fold == k)
        assert abs(r2 - result["r2"]) < 1e-6  # (the text format rounds leaf values)


def test_the_nn_keeps_each_folds_weights_and_serving_them_exports_the_models_whose_mean_predicts(tmp_path):
    """--no-refit for the NN: a fold keeps its weights (cheap, `model.kept`); serving exports
    each into the model's directory as `fold-<k>.pt2`, and those reproduce the folds' scores."""
    from trialfuse.engine.families import mlp

    X, y, _ = make_survivors(400, seed=0)
    folds = [(np.arange(200, 400), np.arange(200)), (np.arange(200), np.arange(200, 400))]
    kept = tmp_path / "kept"
    params = {"hidden_layers": [16, 8], "epochs": 20, "dropout": 0.1}
    with WorkerPool(X, y, folds, slots=[Slot(WorkerKind.CPU, "", 1)], scratch=tmp_path, keep_models=kept) as pool:
        pool.submit(TrialKey("nn", 2), params, [0, 1], seed=0)
        pool.dispatch()
        answers = [pool.next_done(timeout=60) for _ in range(2)]
        files = [kept / "nn-2" / f"fold-{k}" / "model.kept" for k in range(2)]
        served = pool.retrain([Retrain("nn", params, None, tmp_path / "best", 0, fold_files=files)], X[:30])[0]
    assert all(a.result["status"] == "complete" and a.result["model_file"] == "model.kept" for a in answers)
    assert served["status"] == "complete" and served["model_files"] == ["fold-0.pt2", "fold-1.pt2"]
    models = [mlp.load(tmp_path / "best" / name) for name in served["model_files"]]
    expected = (mlp.predict(models[0], X[:30]) + mlp.predict(models[1], X[:30])) / 2
    np.testing.assert_allclose(served["predictions"], expected, rtol=0, atol=1e-12)
    for k, fold in enumerate(folds):  # the served model is the fold's: it reproduces its validation score
        r2 = 1 - np.mean((mlp.predict(models[k], X[fold[1]]) - y[fold[1]]) ** 2) / np.var(y[fold[1]])
        result = next(a.result for a in answers if a.job.fold == k)
        assert abs(r2 - result["r2"]) < 1e-5


def test_the_category_columns_reach_the_retrain_as_categories(tmp_path):
    """The pool's rows carry which columns hold category codes; LightGBM's retrain splits them as such."""
    import lightgbm as lgb

    X, y, _ = make_survivors(400, seed=0)
    X[:, 2] = np.floor(X[:, 2] * 7 % 7)  # seven levels' codes
    folds = [(np.arange(200, 400), np.arange(200)), (np.arange(200), np.arange(200, 400))]
    with WorkerPool(X, y, folds, slots=[Slot(WorkerKind.CPU, "", 1)], scratch=tmp_path, categorical=[2]) as pool:
        [answer] = pool.retrain([Retrain("lightgbm", {"num_leaves": 4, "min_data_in_leaf": 5}, 20, tmp_path / "m", 0)],
                                X[:5])
    infos = lgb.Booster(model_file=str(tmp_path / "m" / answer["model_file"])).dump_model()["feature_infos"]
    assert infos["Column_2"]["values"] and not infos["Column_1"]["values"]
