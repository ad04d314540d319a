"""A run on a storage another run searched: what it saves and what it says about it."""
from __future__ import annotations

import shutil

import pytest

from trialfuse.driver.options import RunOptions
from trialfuse.driver.run import SilentReporter, compare_models

pytestmark = pytest.mark.slow  # whole runs: `pytest -m "not slow"` leaves them out


def test_a_run_whose_best_trial_another_run_trained_says_why_it_saves_no_ensemble(survivors_csv, tmp_path):
    """Before: the second run said "saving lightgbm (fold models)", saved a single refit model
    (the first run's own was an ensemble of its kept trials) and said nothing of why."""
    heard: list[str] = []

    class Recording(SilentReporter):
        def stage(self, message: str) -> None:
            heard.append(message)

    def run(out: str, **storage):
        opts = RunOptions(data=survivors_csv, target="score", models=["lightgbm"], trials=4, folds=2, devices=1,
                          out=tmp_path / out, explain=False, **storage)
        return compare_models(opts, Recording())

    first = run("s1")
    heard.clear()
    second = run("s2", storage=str(tmp_path / "s1" / "study.journal"))  # trains nothing: all 4 trials are there
    assert second.families["lightgbm"].best_trial == first.families["lightgbm"].best_trial
    assert not any(line.startswith("saving lightgbm (fold models)") for line in heard)
    assert any(line.startswith("retraining lightgbm on ") for line in heard)  # what it does: no fold models here
    why = [w for w in second.warnings if "trained by another run" in w]
    assert len(why) == 1 and str((tmp_path / "s1").resolve()) in why[0] and why[0].startswith("no ensemble: ")
    assert second.ensemble["reason"] in why[0]
    assert not any("trained by another run" in w for w in first.warnings)  # its own trials: nothing to say
    moved = tmp_path / "s1-moved"  # its own trials, reached by another path: nothing to say, nothing retrained
    shutil.move(tmp_path / "s1", moved)
    heard.clear()
    again = run("s1-moved", ensemble=False)
    assert not any("trained by another run" in w for w in again.warnings), again.warnings
    assert any(line.startswith("saving lightgbm (fold models)") for line in heard), heard
