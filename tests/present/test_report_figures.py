"""The report's figures draw what a run can hand them without a matplotlib warning on the
user's terminal: a family whose trials all failed or were cut ("No artists with labels"), and
the holdout's curves for many classes."""
from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest

from trialfuse.present.holdout import PLOTS, Holdout
from trialfuse.present.page import Page
from trialfuse.present.report import _history
from trialfuse.task import NUMBERS, Kind, Task


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


@pytest.mark.parametrize("classes", [3, 12, 60])
def test_the_holdouts_curves_draw_any_number_of_classes_without_a_warning(tmp_path, classes):
    """One curve per class (and a base rate each in precision-recall); past LEGEND_ENTRIES the
    legend would outgrow the figure (matplotlib: "Tight layout not applied" on a 60-class run),
    so the lines go unlabelled and the title counts the classes. 3 classes: the plain case."""
    rng = np.random.default_rng(0)
    task = Task(Kind.MULTICLASS, tuple(f"c{k}" for k in range(classes)))
    y = np.arange(600) % classes
    predicted = rng.dirichlet(np.ones(classes), size=600)
    holdout = Holdout(task, y, predicted, np.full((600, classes), 1 / classes))
    page = Page(tmp_path)
    parts: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for plot in ("roc", "precision_recall", "reliability"):
            PLOTS[plot](page, parts, holdout)
    assert len(parts) == 3 and all((page.images / f"holdout_{name}.png").stat().st_size > 0
                                   for name in ("roc", "precision_recall", "reliability"))


def test_a_table_leaves_a_missing_score_blank():
    """A family skipped for time showed "nan" in five cells of the report's comparison table."""
    from trialfuse.present.page import table

    cells = table(["family", "status", "mean", "sd"], [["nn", "skipped: no trial fits", float("nan"), None],
                                                       ["lightgbm", "ok", 0.31234, -0.00001]])
    assert "nan" not in cells and "<td>0.3123</td>" in cells and "<td>0.0000</td>" in cells
    assert cells.count("<td></td>") == 2


def test_the_history_counts_trials_in_whole_numbers(tmp_path):
    """Two trials drew ticks at 0.2, 0.4, ... on the trial axis."""
    import contextlib

    drawn = []

    class Kept(Page):
        @contextlib.contextmanager
        def figure(self, name, parts, size=(8, 4)):
            with super().figure(name, parts, size) as fig:
                drawn.append(fig)
                yield fig

    state = optuna.trial.TrialState
    trials = [optuna.trial.create_trial(state=state.COMPLETE, value=v) for v in (0.5, 0.6)]
    for number, trial in enumerate(trials):
        trial.number = number
    _history(Kept(tmp_path), {"nn": trials}, NUMBERS.metric)
    ticks = drawn[0].axes[0].get_xticks()
    assert len(ticks) and all(float(t).is_integer() for t in ticks), ticks
