"""The report's "The holdout" section: how the saved model did on the sealed rows, every
metric of the task beside what the prior alone scores (the search rows' mean, or their class
shares: the base rate), and for classes the class counts, the confusion matrix, ROC and
precision-recall curves (two classes) and a reliability plot, from holdout_predictions.npz.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

from trialfuse.driver import run_dir
from trialfuse.driver.run_record import RunRecord
from trialfuse.present.page import Page, table
from trialfuse.task import METRICS, Task

CALIBRATION_BINS = 10


def holdout_section(page: Page, record: RunRecord, out: Path) -> None:
    task = record.task
    metrics = record.holdout_metrics
    if not metrics:
        page.section("holdout", "The holdout", ["<p>No holdout metrics recorded (a run from an older version).</p>"])
        return
    labels = {m.name: m.label for m in METRICS[task.kind].values()}
    rows = [[labels.get(name, name), value, metrics["prior"].get(name)] for name, value in metrics["model"].items()]
    parts = [f"<p>The saved model on the {record.holdout_rows} sealed rows, scored once; beside each score the "
             "prior's: what predicting the search rows' " + ("class shares" if task.is_classification else "mean")
             + " for every row scores (the base rate).</p>",
             table(["metric", "saved model", "prior (base rate)"], rows)]
    path = out / run_dir.HOLDOUT_PREDICTIONS
    if task.is_classification and path.exists():
        with np.load(path, allow_pickle=False) as found:
            y, predicted, prior = (np.asarray(found[k]) for k in ("y", "prediction", "prior"))
        _classes(page, parts, task, y.astype(np.int64), predicted, prior)
    page.section("holdout", "The holdout", parts)


def _classes(page: Page, parts: list[str], task: Task, y: np.ndarray, predicted: np.ndarray,
             prior: np.ndarray) -> None:
    names = [str(c) for c in task.classes]
    codes = np.arange(len(names))
    counts = np.bincount(y, minlength=len(names))
    parts.append(table(["class", "holdout rows", "holdout share", "search rows' share (the prior)"],
                       [[name, int(n), n / len(y), float(prior[0, k])] for k, (name, n)
                        in enumerate(zip(names, counts, strict=True))]))
    matrix = confusion_matrix(y, predicted.argmax(axis=1), labels=codes)
    parts.append("<p>Confusion matrix: rows are the actual class, columns the predicted (the likeliest) one.</p>")
    parts.append(table(["actual \\ predicted", *names], [[name, *map(int, row)] for name, row
                                                          in zip(names, matrix, strict=True)]))
    shown = [1] if len(names) == 2 else list(codes)  # two classes: the second's curves say it all
    with page.figure("holdout_curves", parts, size=(12 if len(names) == 2 else 4.5, 4)) as fig:
        axes = fig.subplots(1, 3 if len(names) == 2 else 1, squeeze=False)[0]
        reliability = axes[-1]
        for k in shown:
            actual = (y == k).astype(np.int64)
            if actual.min() == actual.max():
                continue  # a class absent from the holdout (or alone in it) has no curve
            if len(names) == 2:
                fpr, tpr, _ = roc_curve(actual, predicted[:, k])
                axes[0].plot(fpr, tpr, label=f"'{names[k]}'")
                precision, recall, _ = precision_recall_curve(actual, predicted[:, k])
                axes[1].plot(recall, precision)
                axes[1].axhline(actual.mean(), color="grey", linestyle=":", label="base rate")
            observed, mean_predicted = calibration_curve(actual, predicted[:, k], n_bins=CALIBRATION_BINS,
                                                         strategy="quantile")
            reliability.plot(mean_predicted, observed, marker="o", label=f"'{names[k]}'")
        if len(names) == 2:
            axes[0].plot([0, 1], [0, 1], color="grey", linestyle=":")
            axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
            axes[0].legend(fontsize=7)
            axes[1].set(xlabel="recall", ylabel="precision", title="precision-recall")
            axes[1].legend(fontsize=7)
        reliability.plot([0, 1], [0, 1], color="grey", linestyle=":")
        reliability.set(xlabel="predicted probability", ylabel="observed share", title="reliability")
        reliability.legend(fontsize=7)
