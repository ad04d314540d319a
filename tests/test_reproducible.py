"""One seed, one result: the same trials and scores whatever the number of workers."""
from __future__ import annotations

import json

import optuna
import pytest

from conftest import cli


def trials_of(out, family: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=family, storage=storage).get_trials(deepcopy=True)


def run(survivors_csv, out, workers: int, seed: int = 3) -> dict:
    proc = cli("run", survivors_csv, "--target", "score", "--models", "lightgbm,nn", "--trials", "9",
               "--folds", "3", "--seed", str(seed), "--devices", str(workers), "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def two_runs(survivors_csv, tmp_path_factory):
    base = tmp_path_factory.mktemp("repro")
    return [(run(survivors_csv, base / f"w{n}", n), base / f"w{n}") for n in (1, 2)]


def test_one_seed_gives_the_same_trials_and_scores_with_one_or_two_workers(two_runs):
    (first, first_out), (second, second_out) = two_runs
    for family in ("lightgbm", "nn"):
        a, b = trials_of(first_out, family), trials_of(second_out, family)
        assert [t.number for t in a] == [t.number for t in b] == list(range(9))
        for x, y in zip(a, b, strict=True):
            assert x.params == y.params, (family, x.number)
            assert x.state == y.state, (family, x.number)
            assert x.intermediate_values.keys() == y.intermediate_values.keys()
            assert x.intermediate_values == pytest.approx(y.intermediate_values, abs=1e-6)
        assert first["families"][family]["cv_r2_mean"] == pytest.approx(second["families"][family]["cv_r2_mean"],
                                                                       abs=1e-6)
        assert first["families"][family]["best_params"] == second["families"][family]["best_params"]
    assert first["winner"] == second["winner"]
    assert first["holdout_r2"] == pytest.approx(second["holdout_r2"], abs=1e-6)


def test_pruning_stopped_losing_lightgbm_trials_after_their_second_fold(two_runs):
    (results, out), _ = two_runs
    pruned = [t for t in trials_of(out, "lightgbm") if t.state == optuna.trial.TrialState.PRUNED]
    assert results["families"]["lightgbm"]["trials_pruned"] == len(pruned)
    for trial in pruned:
        assert trial.number >= 5  # the pruner waits for 5 complete trials
        assert max(trial.intermediate_values) == 1 == len(trial.user_attrs["cv_r2_folds"]) - 1
