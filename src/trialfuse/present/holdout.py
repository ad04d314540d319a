"""The report's "The holdout" section: how the saved model did on the sealed rows, every
metric of the task beside what the prior alone scores (the search rows' mean, or their class
shares: the base rate), then the plots the task names (`Task.plots`: for classes the class
counts, the confusion matrix, ROC and precision-recall curves for two classes, a reliability
plot), drawn from holdout_predictions.npz.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

from trialfuse.driver import run_dir
from trialfuse.driver.run_record import RunRecord
from trialfuse.present.page import Page, table
from trialfuse.task import Task

CALIBRATION_BINS = 10
LEGEND_ENTRIES = 12  # the most lines a figure's legend names one by one (a precision-recall class draws two)


@dataclass
class Holdout:
    """The sealed rows' targets (class codes), the saved model's probabilities and the prior's."""

    task: Task
    y: np.ndarray  # [rows] int
    predicted: np.ndarray  # [rows, K]
    prior: np.ndarray  # [rows, K]

    @property
    def names(self) -> list[str]:
        return [str(c) for c in self.task.classes]

    def one_vs_rest(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(class, is it, its predicted probability) per class with rows of both kinds; two
        classes: the second only (its curves say it all)."""
        shown = range(1, 2) if len(self.names) == 2 else range(len(self.names))
        pairs = [(self.names[k], (self.y == k).astype(np.int64), self.predicted[:, k]) for k in shown]
        return [(name, actual, p) for name, actual, p in pairs if 0 < actual.sum() < len(actual)]


def holdout_section(page: Page, record: RunRecord, out: Path) -> None:
    task = record.task
    metrics = record.holdout_metrics
    if not metrics:
        page.section("holdout", "The holdout", ["<p>No holdout metrics recorded (a run from an older version).</p>"])
        return
    rows = [[task.metrics[name].label if name in task.metrics else name, value, metrics["prior"].get(name)]
            for name, value in metrics["model"].items()]
    parts = [f"<p>The saved model on the {record.holdout_rows} sealed rows, scored once; beside each score the "
             f"prior's: what predicting the search rows' {task.prior_name} for every row scores, the floor a model "
             "must clear.</p>", table(["metric", "saved model", f"prior ({task.prior_name})"], rows)]
    path = out / run_dir.HOLDOUT_PREDICTIONS
    if task.plots and path.exists():
        with np.load(path, allow_pickle=False) as found:
            holdout = Holdout(task, np.asarray(found["y"]).astype(np.int64), np.asarray(found["prediction"]),
                              np.asarray(found["prior"]))
        for plot in task.plots:
            PLOTS[plot](page, parts, holdout)
    page.section("holdout", "The holdout", parts)


def _class_counts(page: Page, parts: list[str], h: Holdout) -> None:
    counts = np.bincount(h.y, minlength=len(h.names))
    parts.append(table(["class", "holdout rows", "holdout share", "search rows' share (the prior)"],
                       [[name, int(n), n / len(h.y), float(h.prior[0, k])] for k, (name, n)
                        in enumerate(zip(h.names, counts, strict=True))]))


def _confusion_matrix(page: Page, parts: list[str], h: Holdout) -> None:
    matrix = confusion_matrix(h.y, h.predicted.argmax(axis=1), labels=np.arange(len(h.names)))
    parts.append("<p>Confusion matrix: rows are the actual class, columns the predicted (the likeliest) one.</p>")
    parts.append(table(["actual \\ predicted", *h.names], [[name, *map(int, row)] for name, row
                                                            in zip(h.names, matrix, strict=True)]))


def _curves(page: Page, parts: list[str], h: Holdout, name: str, title: str, axes: tuple[str, str],
            draw: Callable[[Any, str, np.ndarray, np.ndarray], None], diagonal: str | None = None) -> None:
    """One figure of a curve per class (one vs the rest), `draw(ax, class, is it, probability)` each."""
    with page.figure(name, parts, size=(4.5, 4)) as fig:
        ax = fig.add_subplot()
        curves = h.one_vs_rest()
        for label, actual, p in curves:
            draw(ax, label, actual, p)
        if len(ax.get_legend_handles_labels()[0]) > LEGEND_ENTRIES:  # a legend of them all outgrows the figure
            for artist in ax.get_lines():
                artist.set_label(f"_{artist.get_label()}")  # matplotlib leaves "_" labels out of a legend
            title = f"{title} ({len(curves)} classes, one line each)"
        if diagonal:
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label=diagonal)
        ax.set(xlabel=axes[0], ylabel=axes[1], title=title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)


def _roc(page: Page, parts: list[str], h: Holdout) -> None:
    def draw(ax, label: str, actual: np.ndarray, p: np.ndarray) -> None:
        fpr, tpr, _ = roc_curve(actual, p)
        ax.plot(fpr, tpr, label=f"'{label}'")

    _curves(page, parts, h, "holdout_roc", "ROC", ("false positive rate", "true positive rate"), draw, "chance")


def _precision_recall(page: Page, parts: list[str], h: Holdout) -> None:
    def draw(ax, label: str, actual: np.ndarray, p: np.ndarray) -> None:
        precision, recall, _ = precision_recall_curve(actual, p)
        ax.plot(recall, precision, label=f"'{label}'")
        ax.axhline(actual.mean(), color="grey", linestyle=":", label=f"base rate of '{label}'")

    _curves(page, parts, h, "holdout_precision_recall", "precision-recall", ("recall", "precision"), draw)


def _reliability(page: Page, parts: list[str], h: Holdout) -> None:
    def draw(ax, label: str, actual: np.ndarray, p: np.ndarray) -> None:
        observed, mean_predicted = calibration_curve(actual, p, n_bins=CALIBRATION_BINS, strategy="quantile")
        ax.plot(mean_predicted, observed, marker="o", label=f"'{label}'")

    _curves(page, parts, h, "holdout_reliability", "reliability", ("predicted probability", "observed share"), draw,
            "calibrated")


PLOTS: dict[str, Callable[[Page, list[str], Holdout], None]] = {
    "class_counts": _class_counts, "confusion_matrix": _confusion_matrix, "roc": _roc,
    "precision_recall": _precision_recall, "reliability": _reliability}
