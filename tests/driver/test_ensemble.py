"""Ensemble selection with known answers, and the out-of-fold store it reads."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from trialfuse.blend import combine
from trialfuse.driver import ensemble
from trialfuse.driver.out_of_fold import OutOfFold
from trialfuse.task import NUMBERS, Kind, Task


def _truth(rows: int = 2000, seed: int = 0) -> tuple[np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=rows)


def test_two_models_with_complementary_errors_share_the_weight_equally():
    rng, y = _truth()
    a, b = y + rng.normal(scale=0.5, size=y.size), y + rng.normal(scale=0.5, size=y.size)
    weak = a + rng.normal(scale=2.0, size=y.size)  # a worse copy of a: worth nothing beside it
    chosen = ensemble.select(np.stack([weak, a, b]), y)
    assert chosen.members == [1, 2]
    assert chosen.weights[1] == pytest.approx(0.5, abs=0.1) and chosen.weights[2] == pytest.approx(0.5, abs=0.1)
    best_single = max(r2_score(y, p) for p in (weak, a, b))
    assert chosen.score > best_single + 0.1  # averaging independent errors halves their variance


def test_exactly_opposite_errors_cancel_in_two_rounds():
    rng, y = _truth()
    error = rng.normal(size=y.size)
    chosen = ensemble.select(np.stack([y + error, y - error]), y)
    assert chosen.counts.tolist() == [1, 1] and chosen.score == pytest.approx(1.0)


def test_a_noisy_copy_of_a_chosen_model_adds_nothing():
    rng, y = _truth()
    a, b = y + rng.normal(scale=0.5, size=y.size), y + rng.normal(scale=0.6, size=y.size)
    without = ensemble.select(np.stack([a, b]), y)
    noisy_copy = a + rng.normal(scale=0.3, size=y.size)
    with_copy = ensemble.select(np.stack([a, b, noisy_copy]), y)
    assert with_copy.counts[2] == 0 and with_copy.counts[:2].tolist() == without.counts.tolist()


def test_the_best_single_model_alone_when_nothing_helps():
    rng, y = _truth()
    good = y + rng.normal(scale=0.1, size=y.size)
    chosen = ensemble.select(np.stack([y + rng.normal(scale=3.0, size=y.size), good]), y)
    assert chosen.members == [1] and chosen.score == pytest.approx(r2_score(y, good))


def test_one_input_gives_one_ensemble():
    rng, y = _truth()
    predictions = np.stack([y + rng.normal(scale=s, size=y.size) for s in (0.5, 0.6, 0.7, 0.8)])
    first, again = ensemble.select(predictions, y), ensemble.select(predictions.copy(), y.copy())
    assert first.counts.tolist() == again.counts.tolist() and first.score == again.score


def _halves(rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.arange(rows // 2, rows), np.arange(rows // 2)), (np.arange(rows // 2), np.arange(rows // 2, rows))]


def test_the_inner_out_of_fold_score_is_honest_on_noise():
    """Forty noise models: chosen on the rows it is scored on, the greedy average fits the noise
    (a score above knowing nothing); chosen on the other half of the rows, it cannot."""
    rng = np.random.default_rng(4)
    y, noise = rng.normal(size=400), rng.normal(size=(40, 400))
    assert ensemble.select(noise, y).score > 0.02
    assert ensemble.cross_validated(noise, y, _halves(400)) < 0.0


def test_the_inner_out_of_fold_score_of_known_blends():
    rng, y = _truth()
    error = rng.normal(size=y.size)
    assert ensemble.cross_validated(np.stack([y + error, y - error]), y, _halves(y.size)) == pytest.approx(1.0)
    one = y + rng.normal(scale=0.5, size=y.size)
    assert ensemble.cross_validated(one[None], y, _halves(y.size)) == pytest.approx(r2_score(y, one), abs=1e-12)


def test_the_best_single_models_inner_score_is_honest_on_noise():
    """Forty small noise models: the best of them on the rows that chose it scores above knowing
    nothing; chosen on the other half of the rows, it cannot. One model scores as itself."""
    rng = np.random.default_rng(4)
    y, noise = rng.normal(size=400), 0.1 * rng.normal(size=(40, 400))
    assert max(r2_score(y, p) for p in noise) > 0.01
    assert ensemble.inner_scores(noise, y, _halves(400)).single < 0.0
    rng, y = _truth()
    one, worse = y + rng.normal(scale=0.5, size=y.size), y + rng.normal(scale=1.0, size=y.size)
    assert ensemble.inner_scores(np.stack([worse, one]), y, _halves(y.size)).single == pytest.approx(
        r2_score(y, one), abs=1e-12)


def test_the_plan_meets_the_best_single_models_inner_score_not_the_one_it_was_chosen_on(tmp_path):
    """Twenty models sharing most of their error, each with a heavy-tailed error of its own, on 100
    rows: the best of them flatters itself on the rows that chose it, above the average's inner
    score; met on rows that did not choose it, the average wins and is saved."""
    from sklearn.model_selection import KFold

    from trialfuse.driver import final_model

    rng, y = _truth(100, seed=2)
    shared = rng.normal(size=y.size)
    errors = {n: 0.5 * (y + shared + 0.2 * rng.standard_t(2, size=y.size)) - y for n in range(20)}
    winner, storage, store = _search_with_kept_predictions(tmp_path, errors, y)
    folds = list(KFold(5, shuffle=True, random_state=0).split(y))
    record = final_model.plan(winner, storage, store, y, workers=2, budget=None, folds=folds).ensemble
    assert record["best_single_oof_score"] > record["caruana_inner_oof_score"] > record["best_single_inner_oof_score"]
    assert record["chosen"] and record["oof_score"] > record["best_single_inner_oof_score"]


def test_class_selection_is_by_the_log_loss_of_the_averaged_probabilities():
    """The greedy loss reads only each row's true-class probability; it must equal
    scikit-learn's log-loss of the whole averaged probabilities."""
    from sklearn.metrics import log_loss

    from trialfuse.task import Kind, Task

    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, size=600).astype(np.float64)
    raw = rng.dirichlet(np.ones(3), size=(4, 600)) + rng.uniform(0.2, 1.0, size=(4, 1, 1)) * np.eye(3)[y.astype(int)]
    predictions = raw / raw.sum(axis=2, keepdims=True)
    task = Task(Kind.MULTICLASS, (0, 1, 2), "log_loss")
    losses = task.greedy_losses(y, task.greedy_view(y, predictions))
    np.testing.assert_allclose(losses, [log_loss(y, p, labels=[0, 1, 2]) for p in predictions], rtol=1e-12)
    chosen = ensemble.select(predictions, y, task=task)
    average = combine(predictions[chosen.members], chosen.weights[chosen.members])
    assert chosen.score == pytest.approx(-log_loss(y, average, labels=[0, 1, 2]), abs=1e-12)
    assert chosen.score >= -losses.min()


def test_combine_of_one_model_is_that_model_to_the_bit():
    values = np.random.default_rng(1).normal(size=100)
    assert np.array_equal(combine([values], [1.0]), values)


def _folds(rows: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    order = np.random.default_rng(0).permutation(rows)
    vals = np.array_split(order, 3)
    return [(np.setdiff1d(np.arange(rows), val), val) for val in vals]


def test_out_of_fold_vectors_put_each_prediction_on_its_row(tmp_path):
    folds = _folds()
    store = OutOfFold(tmp_path, folds)
    truth = np.arange(12, dtype=np.float64) / 10
    store.add("xgboost", 4, 0.5, [truth[val].tolist() for _, val in folds])
    [(family, trial, vector)] = store.vectors()
    assert (family, trial) == ("xgboost", 4) and np.allclose(vector, truth)  # float32 on disk
    assert (tmp_path / "oof" / "xgboost-4.npy").is_file()


def test_out_of_fold_keeps_only_each_familys_best_and_survives_a_resume(tmp_path):
    folds = _folds()
    store = OutOfFold(tmp_path, folds, keep=2)
    per_fold = [[0.0] * len(val) for _, val in folds]
    for trial, score in enumerate([0.3, 0.1, 0.5, 0.2]):
        store.add("lightgbm", trial, score, per_fold)
    store.add("catboost", 0, 0.05, per_fold)
    assert store.trials == {"lightgbm": {2: 0.5, 0: 0.3}, "catboost": {0: 0.05}}
    assert sorted(p.name for p in (tmp_path / "oof").glob("*.npy")) == ["catboost-0.npy", "lightgbm-0.npy",
                                                                         "lightgbm-2.npy"]
    resumed = OutOfFold(tmp_path, folds, keep=2)
    assert [(f, t) for f, t, _ in resumed.vectors()] == [("catboost", 0), ("lightgbm", 2), ("lightgbm", 0)]
    other_folds = OutOfFold(tmp_path, _folds()[::-1], keep=2)  # another fold assignment: nothing carries over
    assert other_folds.vectors() == [] and not list((tmp_path / "oof").glob("*.npy"))


def test_a_resumed_run_forgets_a_vector_whose_trial_was_never_told_complete(tmp_path):
    """A driver killed after keeping a trial's vector and before telling it (its trial was then
    failed and asked again): the vector held a place among the best, where a complete trial's
    belonged (kill -9 of the driver, once in CI)."""
    folds = _folds()
    store = OutOfFold(tmp_path, folds, keep=2)
    per_fold = [[0.0] * len(val) for _, val in folds]
    for trial, score in ((0, 0.3), (1, 0.5), (2, 0.4)):
        store.add("lightgbm", trial, score, per_fold)
    assert store.trials == {"lightgbm": {1: 0.5, 2: 0.4}}
    told = {"lightgbm": {0: 0.3, 2: 0.4}}  # trial 1 never told: the rerun asked its params again
    assert OutOfFold(tmp_path, folds, keep=2, running={"lightgbm-1"}, told=told).trials == {"lightgbm": {1: 0.5,
                                                                                                         2: 0.4}}
    resumed = OutOfFold(tmp_path, folds, keep=2, told=told)  # nor does another driver train it now
    assert resumed.trials == {"lightgbm": {2: 0.4}} and not (tmp_path / "oof" / "lightgbm-1.npy").exists()
    resumed.add("lightgbm", 3, 0.35, per_fold)  # a place is free again
    assert resumed.trials == {"lightgbm": {2: 0.4, 3: 0.35}}


def _fold_models(store: OutOfFold, family: str, trial: int, folds: int) -> None:
    """What a worker leaves when asked to keep a trial's fold models."""
    for k in range(folds):
        (store.models_dir(family, trial) / f"fold-{k}").mkdir(parents=True)
        (store.models_dir(family, trial) / f"fold-{k}" / "model.txt").write_text("a model")


def test_fold_models_are_kept_and_dropped_with_their_trials_vector(tmp_path):
    folds = _folds()
    store = OutOfFold(tmp_path, folds, keep=2)
    per_fold = [[0.0] * len(val) for _, val in folds]
    for trial, score in enumerate([0.3, 0.1, 0.5, 0.2]):
        _fold_models(store, "lightgbm", trial, 3)
        store.add("lightgbm", trial, score, per_fold)
    _fold_models(store, "lightgbm", 4, 3)
    store.discard("lightgbm", 4)  # pruned
    _fold_models(store, "lightgbm", 5, 2)  # a fold still training when the trial was pruned: swept up
    assert sorted(p.name for p in (tmp_path / "oof" / "models").iterdir()) == ["lightgbm-0", "lightgbm-2",
                                                                                "lightgbm-5"]
    store.remove_unkept(running={"lightgbm-5"})  # another driver on the run directory still trains it
    assert (tmp_path / "oof" / "models" / "lightgbm-5").is_dir()
    store.remove_unkept()
    assert sorted(p.name for p in (tmp_path / "oof" / "models").iterdir()) == ["lightgbm-0", "lightgbm-2"]
    assert store.fold_files("lightgbm", 2) == [store.models_dir("lightgbm", 2) / f"fold-{k}" / "model.txt"
                                               for k in range(3)]
    (store.models_dir("lightgbm", 0) / "fold-1" / "model.txt").unlink()
    assert store.fold_files("lightgbm", 0) is None  # not all K: the model is refit instead
    _fold_models(store, "nn", 7, 2)  # a second driver opens the run directory while the first trains nn 7
    OutOfFold(tmp_path, folds, running={"nn-7"})
    assert (tmp_path / "oof" / "models" / "nn-7").is_dir()
    OutOfFold(tmp_path, folds)
    assert not (tmp_path / "oof" / "models" / "nn-7").exists()


def test_the_first_pick_can_be_fixed_to_the_searchs_best_model():
    rng, y = _truth()
    best_by_oof = y + rng.normal(scale=0.5, size=y.size)
    winner = y + rng.normal(scale=0.55, size=y.size)  # the search's winner by mean fold R², slightly worse here
    chosen = ensemble.select(np.stack([best_by_oof, winner]), y, first=1)
    assert chosen.counts[1] >= 1 and chosen.members == [0, 1]
    alone = ensemble.select(np.stack([best_by_oof, winner]), y, rounds=1, first=1)
    assert alone.members == [1] and alone.score == pytest.approx(r2_score(y, winner))


def _search_with_kept_predictions(tmp_path, errors: dict[int, np.ndarray], y: np.ndarray, seconds: float = 1.0,
                                  xgboost: dict[int, np.ndarray] = (), xgboost_seconds: float = 1.0):
    """A lightgbm study whose complete trials' out-of-fold predictions are y + errors[trial]
    (the winner is its best), and an xgboost study of `xgboost`'s trials alike."""
    import optuna

    from trialfuse.catalog import FAMILIES
    from trialfuse.driver.trial_records import FamilyResult

    folds = [(np.arange(y.size // 2, y.size), np.arange(y.size // 2)),
             (np.arange(y.size // 2), np.arange(y.size // 2, y.size))]
    storage = optuna.storages.InMemoryStorage()
    store = OutOfFold(tmp_path, folds)
    for family, trials, fold_seconds in (("xgboost", dict(xgboost), xgboost_seconds), ("lightgbm", errors, seconds)):
        study = optuna.create_study(study_name=family, storage=storage, direction="maximize")
        for number, error in trials.items():
            trial = study.ask()
            FAMILIES[family].suggest(trial)
            trial.set_user_attr("best_rounds", [10, 12])
            trial.set_user_attr("fold_seconds", [fold_seconds, fold_seconds])
            r2 = float(r2_score(y, y + error))
            store.add(family, number, r2, [(y + error)[val].tolist() for _, val in folds])
            study.tell(trial, r2)
    best = study.best_trial
    winner = FamilyResult("lightgbm", best_params=best.params, best_trial=best.number, cv_score_mean=best.value,
                          best_rounds=[10, 12], best_fold_seconds=[seconds, seconds])
    return winner, storage, store


def test_the_plan_saves_an_ensemble_that_beats_the_winner_and_starts_from_it(tmp_path):
    from trialfuse.driver import final_model

    rng, y = _truth(400)
    errors = {0: rng.normal(scale=0.5, size=y.size), 1: rng.normal(scale=0.5, size=y.size)}
    winner, storage, store = _search_with_kept_predictions(tmp_path, errors, y)
    chosen = final_model.plan(winner, storage, store, y, workers=2, budget=None)
    assert chosen.is_ensemble and chosen.ensemble["chosen"]
    assert chosen.members[0].trial == winner.best_trial  # the winner is the first pick
    assert sorted(m.trial for m in chosen.members) == [0, 1]


def test_without_refit_members_are_served_by_their_kept_fold_models_and_need_no_retrain_time(tmp_path):
    import time

    from trialfuse.driver import final_model
    from trialfuse.driver.budget import REPORT_SECONDS, Budget

    rng, y = _truth(400)
    errors = {0: rng.normal(scale=0.5, size=y.size), 1: rng.normal(scale=0.5, size=y.size)}
    winner, storage, store = _search_with_kept_predictions(tmp_path, errors, y, seconds=30.0)
    for trial in errors:
        _fold_models(store, "lightgbm", trial, 2)
    late = Budget(end=time.monotonic() + REPORT_SECONDS + 3.0, seconds=60.0)  # retrains would not fit; serving does
    chosen = final_model.plan(winner, storage, store, y, workers=1, budget=late, refit=False)
    assert chosen.is_ensemble and all(m.fold_files and len(m.fold_files) == 2 for m in chosen.members)
    refit = final_model.plan(winner, storage, store, y, workers=1, budget=late)
    assert not refit.is_ensemble and refit.members[0].fold_files is None
    assert "its 2 members' retrain (about" in refit.ensemble["reason"]
    spent = Budget(end=time.monotonic() + REPORT_SECONDS - 10.0, seconds=60.0)  # not even serving fits
    squeezed = final_model.plan(winner, storage, store, y, workers=1, budget=spent, refit=False)
    assert not squeezed.is_ensemble and "its 2 members' saving and scoring (about" in squeezed.ensemble["reason"]
    alone = final_model.plan(winner, storage, store, y, workers=1, budget=None, ensembles=False, refit=False)
    assert not alone.is_ensemble and alone.members[0].fold_files == store.fold_files("lightgbm", winner.best_trial)


def test_the_plan_keeps_the_winner_when_the_ensemble_gains_nothing_or_does_not_fit(tmp_path):
    import time

    from trialfuse.driver import final_model
    from trialfuse.driver.budget import REPORT_SECONDS, Budget

    rng, y = _truth(400)
    error = rng.normal(scale=0.5, size=y.size)
    winner, storage, store = _search_with_kept_predictions(tmp_path / "a", {0: error, 1: error + 2.0}, y)
    alone = final_model.plan(winner, storage, store, y, workers=2, budget=None)
    assert not alone.is_ensemble and "no gain" in alone.ensemble["reason"]

    errors = {0: rng.normal(scale=0.5, size=y.size), 1: rng.normal(scale=0.5, size=y.size)}
    winner, storage, store = _search_with_kept_predictions(tmp_path / "b", errors, y, seconds=30.0)
    late = Budget(end=time.monotonic() + REPORT_SECONDS + 1.0, seconds=60.0)  # 1 s left; each retrain ~60 s
    refused = final_model.plan(winner, storage, store, y, workers=1, budget=late)
    assert not refused.is_ensemble and "would not fit" in refused.ensemble["reason"]
    assert refused.warnings and refused.members[0].trial == winner.best_trial


def test_the_plan_saves_a_stack_where_it_beats_the_average_out_of_fold(tmp_path):
    """Two models that both shrink toward the mean: no average undoes it, a stack's weights
    (summing past one) and intercept do; served as planned."""
    from trialfuse.blend import serve
    from trialfuse.driver import final_model

    rng, y = _truth(600)
    errors = {n: -0.4 * (y - y.mean()) + rng.normal(scale=0.3, size=y.size) for n in (0, 1)}
    winner, storage, store = _search_with_kept_predictions(tmp_path, errors, y)
    folds = [(np.arange(y.size // 2, y.size), np.arange(y.size // 2)),
             (np.arange(y.size // 2), np.arange(y.size // 2, y.size))]
    average = final_model.plan(winner, storage, store, y, workers=2, budget=None)
    chosen = final_model.plan(winner, storage, store, y, workers=2, budget=None, folds=folds)
    assert average.ensemble["method"] == "caruana" and average.stack is None
    record = chosen.ensemble
    assert record["chosen"] and record["method"] == "stack" and chosen.stack["link"] == "identity"
    assert record["oof_score"] == record["stack_oof_score"] > record["caruana_oof_score"] + 0.05
    assert chosen.members[0].trial == winner.best_trial and sum(m.weight for m in chosen.members) > 1.3
    vectors = {n: y + e for n, e in errors.items()}
    served = serve([vectors[m.trial] for m in chosen.members], [m.weight for m in chosen.members], chosen.stack)
    assert r2_score(y, served) > 0.85 > r2_score(y, vectors[0]) + 0.05


def test_the_stack_meets_the_averages_inner_score_not_the_one_it_was_chosen_on(tmp_path):
    """Six models that shrink a little toward the mean: the greedy average scored on the rows
    that chose it is above the stack's inner out-of-fold score, scored on rows it did not see it
    is below; the stack is saved, and the average's flattering score is only recorded."""
    from trialfuse.driver import final_model

    rng, y = _truth(300)
    errors = {n: -0.15 * (y - y.mean()) + rng.normal(scale=0.6, size=y.size) for n in range(6)}
    winner, storage, store = _search_with_kept_predictions(tmp_path, errors, y)
    chosen = final_model.plan(winner, storage, store, y, workers=2, budget=None, folds=_halves(y.size))
    record = chosen.ensemble
    assert record["caruana_oof_score"] > record["stack_oof_score"] > record["caruana_inner_oof_score"] + 0.003
    assert record["chosen"] and record["method"] == "stack" and record["oof_score"] == record["stack_oof_score"]


@pytest.mark.parametrize("stacked", [False, True])
def test_when_a_members_retrain_fails_the_winner_alone_is_saved_and_scored_as_served(tmp_path, stacked):
    """The fallback is the best single model with weight one: its holdout score is its own
    predictions' (before: the ensemble's weight times them, and under a stack without the stack)."""
    from trialfuse.driver import final_model
    from trialfuse.driver.table import Table
    from trialfuse.driver.trial_records import FamilyResult

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 2)), rng.normal(size=100)
    sealed, rest = np.arange(80, 100), np.arange(80)
    served = y[sealed] + rng.normal(scale=0.5, size=20)  # what the winner predicts on the holdout

    class Pool:
        def retrain(self, retrains, X_holdout):
            return [{"status": "error", "error": "boom"} if r.family == "xgboost" else
                    {"status": "complete", "model_file": "model.txt", "predictions": served.tolist(), "rounds": 10,
                     "seconds": 1.0} for r in retrains]

    members = [final_model.Member("lightgbm", 0, {}, 10, [1.0], 0.5, weight=0.3),
               final_model.Member("xgboost", 1, {}, 10, [1.0], 0.4, weight=0.9)]
    plan = final_model.Plan(members, {"chosen": True, "oof_score": 0.6}, stack={"link": "identity", "intercept": 0.2}
                            if stacked else None)
    best = FamilyResult("lightgbm", best_params={}, best_trial=0, cv_score_mean=0.5, cv_score_folds=[0.5])
    table = Table(X, y, ["a", "b"], "y")
    saved = final_model.train_and_save(Pool(), plan, best, table, rest, sealed, tmp_path, seed=0)
    assert saved["winner"] == "lightgbm" and "a member's retrain failed" in saved["warnings"][0]
    assert saved["holdout_score"] == pytest.approx(r2_score(y[sealed], served), abs=1e-12)


def test_where_the_stacks_retrain_does_not_fit_the_average_that_does_is_saved(tmp_path):
    """The stack leans on a slow xgboost model (its offset an intercept undoes, which no average
    can), the average on two quick lightgbm ones: with 10 s left, the stack's 60 s retrain is
    passed over, said, and the average saved, rather than the best single model."""
    import time

    from trialfuse.driver import final_model
    from trialfuse.driver.budget import REPORT_SECONDS, Budget

    rng, y = _truth(600, seed=1)
    errors = {n: rng.normal(scale=0.5, size=y.size) for n in (0, 1)}
    slow = {0: -0.4 * (y - y.mean()) + 3.0 + rng.normal(scale=0.05, size=y.size)}
    winner, storage, store = _search_with_kept_predictions(tmp_path, errors, y, xgboost=slow, xgboost_seconds=30.0)
    unbounded = final_model.plan(winner, storage, store, y, workers=2, budget=None, folds=_halves(y.size))
    assert unbounded.ensemble["method"] == "stack" and "xgboost" in {m.family for m in unbounded.members}
    late = Budget(end=time.monotonic() + REPORT_SECONDS + 10.0, seconds=60.0)
    chosen = final_model.plan(winner, storage, store, y, workers=2, budget=late, folds=_halves(y.size))
    record = chosen.ensemble
    assert record["chosen"] and record["method"] == "caruana" and chosen.stack is None
    assert {m.family for m in chosen.members} == {"lightgbm"}
    assert record["oof_score"] == record["caruana_inner_oof_score"]
    assert record["stack_oof_score"] > record["oof_score"] > record["best_single_inner_oof_score"]
    assert len(record["passed_over"]) == 1 and record["passed_over"][0].startswith("ensemble not saved as the stack")
    assert "would not fit" in record["passed_over"][0] and chosen.warnings == record["passed_over"]
    chosen.warnings.append("later")  # the plan's warnings and the record's list are not one object
    assert len(record["passed_over"]) == 1


def test_where_no_ensemble_is_saved_the_record_is_the_best_scoring_ones_and_says_why(tmp_path):
    """The stack does not fit and the average does not fit either (each member 30 s): the single
    model is saved, the record is the stack's with its own reason, and both are warned of."""
    import time

    from trialfuse.driver import final_model
    from trialfuse.driver.budget import REPORT_SECONDS, Budget

    rng, y = _truth(600, seed=1)
    errors = {n: rng.normal(scale=0.5, size=y.size) for n in (0, 1)}
    slow = {0: -0.4 * (y - y.mean()) + 3.0 + rng.normal(scale=0.05, size=y.size)}
    winner, storage, store = _search_with_kept_predictions(tmp_path, errors, y, seconds=30.0, xgboost=slow,
                                                           xgboost_seconds=30.0)
    late = Budget(end=time.monotonic() + REPORT_SECONDS + 10.0, seconds=60.0)
    alone = final_model.plan(winner, storage, store, y, workers=1, budget=late, folds=_halves(y.size))
    record = alone.ensemble
    assert not alone.is_ensemble and not record["chosen"] and "passed_over" not in record
    assert record["method"] == "stack" and "would not fit" in record["reason"]
    assert [w.split(":")[0] for w in alone.warnings] == ["ensemble not saved as the stack",
                                                          "ensemble not saved as the average"]


def test_the_inner_score_of_the_average_starts_each_fold_from_that_folds_best():
    """Two models, each right on one half of the rows and wrong on the other. One round: each
    half is predicted by the model best on the other half, the wrong one for it, so the honest
    score of starting from the best is low; starting both halves from the winner all the rows
    chose would have predicted one half well."""
    rng, y = _truth(400)
    good, bad = rng.normal(scale=0.1, size=y.size), rng.normal(scale=2.0, size=y.size)
    half = np.arange(y.size) < y.size // 2
    a = y + np.where(half, good, bad)
    b = y + np.where(half, bad, good)
    folds = _halves(y.size)
    each_from_its_best = ensemble.inner_scores(np.stack([a, b]), y, folds, rounds=1).average
    assert each_from_its_best == pytest.approx(r2_score(y, np.where(half, b, a)), abs=1e-12)


def test_each_inner_folds_stack_reads_the_models_its_own_rows_chose(tmp_path):
    """Forty models of pure noise in two families. The stack reads eight of them: each family's
    best and the average's members. Chosen on all the rows, those eight fit the rows each inner
    fold then predicts, and the stack's inner score flattered it by 0.06 of R² here; chosen on
    each fold's training rows alone (ensemble.Inner.picks), it does not."""
    from sklearn.model_selection import KFold

    from trialfuse.driver import final_model, stack

    rng, y = _truth(300, seed=0)
    noise = [{n: y.mean() - y + rng.normal(scale=y.std(), size=y.size) for n in range(20)} for _ in range(2)]
    winner, storage, store = _search_with_kept_predictions(tmp_path, noise[0], y, xgboost=noise[1])
    folds = list(KFold(5, shuffle=True, random_state=0).split(np.zeros((y.size, 1))))
    honest = final_model.plan(winner, storage, store, y, workers=2, budget=None, folds=folds).ensemble
    candidates, vectors = final_model._candidates(store, storage)
    first = [m.name for m in candidates].index(f"lightgbm-{winner.best_trial}")
    chosen_on_all_rows = stack.inputs([m.cv_score_mean for m in candidates], [m.family for m in candidates],
                                      ensemble.select(vectors, y, first=first).members, first)
    flattered = stack.fit(vectors, y, folds, NUMBERS, chosen_on_all_rows).oof_score
    assert honest["stack_oof_score"] < flattered - 0.05 and honest["stack_oof_score"] < 0.0


def test_an_ensemble_is_refused_only_where_the_single_model_is_clearly_better():
    rng = np.random.default_rng(0)
    y = rng.normal(size=1000)
    single = y + rng.normal(scale=0.5, size=y.size)
    assert not ensemble.clearly_worse(single, single, y)  # equal
    assert not ensemble.clearly_worse(single + rng.normal(scale=0.01, size=y.size), single, y)  # within noise
    assert ensemble.clearly_worse(single + rng.normal(scale=0.5, size=y.size), single, y)  # clearly worse
    assert not ensemble.clearly_worse(0.5 * (single + y + rng.normal(scale=0.5, size=y.size)), single, y)  # better
    classes = Task(Kind.BINARY, (0, 1), "log_loss")
    codes = (y > 0).astype(np.float64)
    sure = np.column_stack([1 - codes, codes]) * 0.8 + 0.1  # right, 90% sure
    assert ensemble.clearly_worse(np.full_like(sure, 0.5), sure, codes, classes)
    assert not ensemble.clearly_worse(sure, np.full_like(sure, 0.5), codes, classes)


def test_an_average_a_little_below_the_single_models_inner_score_is_still_saved(tmp_path):
    """Three models sharing most of their error: the average's inner R² is 0.0015 below the best
    single model's, well within the noise of 200 rows. Saved: an ensemble chosen by its inner
    score beat the best single model on the holdout in 124 of our 133 runs, and on chile the
    averages such a rule refused would have won in 5 of 5 (before: refused, "no gain")."""
    from sklearn.model_selection import KFold

    from trialfuse.driver import final_model

    rng = np.random.default_rng(12)
    y = rng.normal(size=200)
    base = rng.normal(scale=0.5, size=y.size)
    errors = {n: base + rng.normal(scale=0.1, size=y.size) for n in range(3)}
    winner, storage, store = _search_with_kept_predictions(tmp_path, errors, y)
    folds = list(KFold(5, shuffle=True, random_state=0).split(y))
    chosen = final_model.plan(winner, storage, store, y, workers=2, budget=None, folds=folds)
    record = chosen.ensemble
    assert record["best_single_inner_oof_score"] - 0.003 < record["caruana_inner_oof_score"] \
        < record["best_single_inner_oof_score"]
    assert record["chosen"] and record["method"] == "caruana" and chosen.is_ensemble


def test_where_the_single_model_is_clearly_better_it_is_saved_and_the_record_says_by_how_much(tmp_path, monkeypatch):
    from sklearn.model_selection import KFold

    from trialfuse.driver import final_model

    rng, y = _truth(300)
    errors = {n: rng.normal(scale=0.5, size=y.size) for n in range(3)}
    winner, storage, store = _search_with_kept_predictions(tmp_path, errors, y)
    monkeypatch.setattr(ensemble, "clearly_worse", lambda *args: True)  # whatever the ensembles score
    alone = final_model.plan(winner, storage, store, y, workers=2, budget=None,
                             folds=list(KFold(5, shuffle=True, random_state=0).split(y)))
    assert not alone.is_ensemble and alone.members[0].trial == winner.best_trial
    assert alone.ensemble["reason"].startswith("the best single model is clearly better: its out-of-fold squared "
                                               "error is lower by ")


def test_an_ensembles_fold_scores_read_as_a_familys_and_its_pooled_rmse_does_not():
    """A new user's RMSE run showed the saved ensemble at 3.54 (pooled over every row) above families
    of 2.92 and 3.09 (their folds' mean): pooled, an RMSE is never below its folds' mean."""
    from trialfuse.driver.run_record import cv_of

    rmse = Task(metric_name="rmse")
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    predictions = y + rng.normal(size=300) * np.repeat([0.2, 0.5, 2.0], 100)  # folds of unlike error
    folds = [(np.setdiff1d(np.arange(300), part), part) for part in np.split(np.arange(300), 3)]
    scores = ensemble.fold_scores(predictions, y, folds, rmse)
    assert scores == [rmse.score(y[part], predictions[part]) for _, part in folds]
    assert rmse.score(y, predictions) < np.mean(scores) - 0.1  # pooled reads worse (scores are -RMSE)
    record = {"oof_score": rmse.score(y, predictions), "best_single_oof_score": -9.0, "fold_scores": scores,
              "best_single_fold_scores": [-1.0, -2.0, -3.0]}
    assert cv_of(record) == (pytest.approx(np.mean(scores)), pytest.approx(np.std(scores)), -2.0)
    older = {"oof_score": -1.5, "best_single_oof_score": -1.7}  # a run before fold scores were kept
    mean, spread, single = cv_of(older)
    assert (mean, single) == (-1.5, -1.7) and np.isnan(spread)
