"""The report's optimization history draws a family whose trials all failed or were cut as an
empty panel that says so, without matplotlib's "No artists with labels" warning reaching the
user's terminal."""
from __future__ import annotations

import warnings

import optuna

from trialfuse.present.page import Page
from trialfuse.present.report import _history
from trialfuse.task import NUMBERS


def test_a_family_without_a_finished_trial_is_drawn_without_a_warning(tmp_path):
    state = optuna.trial.TrialState
    studies = {"lightgbm": [optuna.trial.create_trial(state=state.COMPLETE, value=0.5)],
               "nn": [optuna.trial.create_trial(state=state.FAIL)]}
    page = Page(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _history(page, studies, NUMBERS.metric)
    assert (page.images / "history.png").stat().st_size > 0
    assert "history.png" in page.sections[0]
