"""What a run predicts: a number (regression) or a class (binary, multiclass).

One object carries everything that differs between the three, so the rest of the tree asks
the task rather than branching on it: how the target column becomes `y`, the search metric
(always higher-is-better: R², or log-loss negated, as scikit-learn's scorers are), the
metrics reported beside it, the splitter (stratified for classes), and how a model's output
reads back as the target's own values. Torch-free (numpy, pandas, scikit-learn's metrics),
so the driver and the engine both use it.

How `auto` reads the target column: driver/target.py.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from trialfuse.catalog import OBJECTIVE

PROBABILITY_FLOOR = 1e-15  # log-loss clips probabilities here (scikit-learn's eps for float64)
CLASS_WEIGHTS = ("none", "balanced")


SHOWN_CLASSES = 10  # a task's description names this many classes at most


class Kind(enum.StrEnum):
    REGRESSION = "regression"
    BINARY = "binary"
    MULTICLASS = "multiclass"


class Objective(enum.StrEnum):
    """What a model trains to lower (each engine names it its library's way; the NN's early
    stopping watches it) and the ensemble is chosen by: squared error for numbers; under MAE
    absolute error (squared error leads a model to each row's mean, MAE rewards the median), which
    the boosting families search beside squared error (Task.objectives) and the forests leave to
    the others; for a count (Task.counts) the boosting families also search the Poisson deviance,
    which aims at the same mean by another path (its trials and the ensemble still read squared
    error); log-loss for classes."""

    SQUARED_ERROR = "squared error"
    ABSOLUTE_ERROR = "absolute error"
    POISSON = "poisson"
    BINARY_LOG_LOSS = "binary log-loss"
    MULTICLASS_LOG_LOSS = "multiclass log-loss"

    @property
    def words(self) -> str:
        """The loss as reports name it ("log-loss" for either class objective)."""
        return "log-loss" if self in LOG_LOSSES else str(self)


LOG_LOSSES = (Objective.BINARY_LOG_LOSS, Objective.MULTICLASS_LOG_LOSS)


@dataclass(frozen=True)
class Metric:
    """A search metric: `score(y, prediction)` is higher-is-better; `shown` turns a score back
    into the number people read (log-loss positive); `objective`, what models train on where it
    ranks them (None: the kind's own, OBJECTIVES)."""

    name: str
    label: str
    score: Callable[[np.ndarray, np.ndarray], float]
    shown: Callable[[float], float] = lambda score: score
    objective: Objective | None = None


def _r2(y, prediction) -> float:
    return float(r2_score(y, prediction))


def _neg_rmse(y, prediction) -> float:
    return -float(np.sqrt(mean_squared_error(y, prediction)))


def _neg_mae(y, prediction) -> float:
    return -float(mean_absolute_error(y, prediction))


def _neg_log_loss(y, probabilities) -> float:
    return -_log_loss(y, probabilities)


def _log_loss(y, probabilities) -> float:
    """scikit-learn's log-loss on probabilities renormalized to sum to one in float64 (a float32
    model's rows are off by 1e-7, past the check scikit-learn makes in float64)."""
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    return float(log_loss(y, probabilities, labels=np.arange(probabilities.shape[1])))


def _roc_auc(y, probabilities) -> float:
    if probabilities.shape[1] == 2:
        return float(roc_auc_score(y, probabilities[:, 1]))
    return float(roc_auc_score(y, probabilities, multi_class="ovr", average="macro",
                               labels=np.arange(probabilities.shape[1])))


def _accuracy(y, probabilities) -> float:
    return float(accuracy_score(y, probabilities.argmax(axis=1)))


def _balanced_accuracy(y, probabilities) -> float:
    return float(balanced_accuracy_score(y, probabilities.argmax(axis=1)))


R2 = Metric("r2", "R²", _r2)
RMSE = Metric("rmse", "RMSE", _neg_rmse, shown=lambda score: -score)  # in the target's units, lower is better
MAE = Metric("mae", "MAE", _neg_mae, shown=lambda score: -score,  # a few large misses weigh less than in RMSE
             objective=Objective.ABSOLUTE_ERROR)
LOG_LOSS = Metric("log_loss", "log-loss", _neg_log_loss, shown=lambda score: -score)
ROC_AUC = Metric("roc_auc", "ROC-AUC", _roc_auc)
ACCURACY = Metric("accuracy", "accuracy", _accuracy)
BALANCED_ACCURACY = Metric("balanced_accuracy", "balanced accuracy", _balanced_accuracy)
CLASS_METRICS = {m.name: m for m in (LOG_LOSS, ROC_AUC, ACCURACY, BALANCED_ACCURACY)}
NUMBER_METRICS = {m.name: m for m in (R2, RMSE, MAE)}
METRICS = {Kind.REGRESSION: NUMBER_METRICS, Kind.BINARY: CLASS_METRICS, Kind.MULTICLASS: CLASS_METRICS}
# the report's holdout plots of each kind (present/holdout.py draws them by name)
PLOTS = {Kind.REGRESSION: (),
         Kind.BINARY: ("class_counts", "confusion_matrix", "roc", "precision_recall", "reliability"),
         Kind.MULTICLASS: ("class_counts", "confusion_matrix", "reliability")}
OBJECTIVES = {Kind.REGRESSION: Objective.SQUARED_ERROR, Kind.BINARY: Objective.BINARY_LOG_LOSS,
              Kind.MULTICLASS: Objective.MULTICLASS_LOG_LOSS}  # unless the metric names its own (Task.objective)
# what the prior predicts: the constant each objective favours
PRIORS = {Objective.SQUARED_ERROR: "mean", Objective.ABSOLUTE_ERROR: "median", Objective.POISSON: "mean",
          Objective.BINARY_LOG_LOSS: "class shares", Objective.MULTICLASS_LOG_LOSS: "class shares"}
# K when --folds is not given. Each saved model is served as the mean of its K fold models, and at
# K = 8 (AutoGluon best_quality's bagging) each is fit on 87.5% of the search rows, not 80%, which
# is worth trials 1.75 times dearer for numbers and two classes. Several classes keep 5: a tree
# per class per round makes a fold dearer still, and a short budget lost whole families' first
# trials to 8 folds...
FOLDS = {Kind.REGRESSION: 8, Kind.BINARY: 8, Kind.MULTICLASS: 5}
# ...unless a class is rare (fewer than RARE_CLASS_ROWS rows in the table): each fold model then
# learns it from few rows, and 87.5% of them is worth more than the trials 8 folds cost. The line
# lies between the tables that gained and those that lost at 60 s on 2 cores (bench/results/
# HISTORY.md, "Figures that lived in code comments"; ...-folds-8-60s.json, ...-multiclass-folds-60s.json).
RARE_CLASS_ROWS = 400
RARE_CLASS_FOLDS = 8


@dataclass(frozen=True)
class Task:
    """The run's task; for classes, their original values in the order of y's codes 0..K-1."""

    kind: Kind = Kind.REGRESSION
    classes: tuple = ()
    metric_name: str = "r2"
    class_weight: str | tuple[float, ...] = "none"  # "balanced": each class weighs as much as any other;
    # or each class's own weight, in the order of `classes` (scikit-learn's {label: weight}, read by target.decide)
    counts: bool = False  # the target is a count (target.is_count): the boosting families search Poisson too
    trains_on: Objective | None = None  # set by `trained_by` in a worker, for one model: never saved

    @property
    def is_classification(self) -> bool:
        return self.kind != Kind.REGRESSION

    @property
    def metric(self) -> Metric:
        return METRICS[self.kind][self.metric_name]

    @property
    def metrics(self) -> dict[str, Metric]:
        """Every metric of the kind (the search metric among them), by name."""
        return METRICS[self.kind]

    @property
    def plots(self) -> tuple[str, ...]:
        """The report's holdout plots for this kind, by name."""
        return PLOTS[self.kind]

    @property
    def prior_name(self) -> str:
        """What the prior predicts for every row: the search rows' mean (their median where the
        models train on absolute error, the constant it favours), or their class shares."""
        return PRIORS[self.objective]

    @property
    def objective(self) -> Objective:
        """What the models train on: the search metric's own (absolute error for MAE), else the kind's
        (a boosting model's own where its params chose another: `trained_by`)."""
        return self.trains_on or self.metric.objective or OBJECTIVES[self.kind]

    @property
    def objectives(self) -> tuple[str, ...]:
        """The objectives the boosting families search (catalog.suggest), in the order their starts
        take them, squared error first. Under MAE, then absolute error: it aims at the median MAE
        rewards and a few far targets barely move it; squared error learns from fewer rows and
        rounds where the noise is symmetric (median and mean alike), so a family with time for one
        trial gets it. Trained on absolute error alone, baseball and the reference table lost
        0.5-1% of their holdout MAE on each of three seeds where movies gained 0.7%; searched this
        way each table scored as well as the better of the two or better (bench/results/HISTORY.md,
        "Trained on absolute error"). For a count under R² or RMSE, then the Poisson deviance: the
        same mean, fitted on the log scale where a count's spread grows with it; alone it scored
        below squared error on baseball, beside it its models make other errors and the ensemble
        gains (HISTORY.md, "Counts"). () where there is no choice."""
        own = self.metric.objective  # (the run's choice: a model's own, `trains_on`, is one of these)
        if own == Objective.ABSOLUTE_ERROR:
            return str(Objective.SQUARED_ERROR), str(own)
        if self.counts and not self.is_classification:
            return str(Objective.SQUARED_ERROR), str(Objective.POISSON)
        return ()

    def trained_by(self, params: dict[str, Any]) -> Task:
        """This task as a model of these params trains for it: on the objective they chose (catalog.OBJECTIVE)."""
        return replace(self, trains_on=Objective(params[OBJECTIVE])) if OBJECTIVE in params else self

    @property
    def loss_name(self) -> str:
        """What `loss` and `row_losses` measure, in words."""
        return self._measured.words

    @property
    def _measured(self) -> Objective:
        """The loss `loss`, `row_losses` and `loss_name` read: the objective, but squared error for a
        Poisson model (a count's folds are read by the run's own, as every fold is)."""
        return Objective.SQUARED_ERROR if self.objective == Objective.POISSON else self.objective

    @property
    def described(self) -> str:
        """The task in a line, as the report's summary names it: the kind, the classes (the first
        SHOWN_CLASSES), the search metric and the class weights where they are not plain."""
        line = f"{self.kind}"
        if self.classes:
            names = ", ".join(str(plain_label(c)) for c in self.classes[:SHOWN_CLASSES])
            more = f", ... ({len(self.classes)} classes)" if len(self.classes) > SHOWN_CLASSES else ""
            line += f" ({names}{more})"
        line += f"; searched by {self.metric.label}"
        if isinstance(self.class_weight, tuple):  # the first SHOWN_CLASSES, as the classes
            weights = list(zip(self.classes, self.class_weight, strict=True))
            more = ", ..." if len(weights) > SHOWN_CLASSES else ""
            return line + "; classes weighted " + ", ".join(f"{plain_label(c)}: {w:g}"
                                                            for c, w in weights[:SHOWN_CLASSES]) + more
        return line + ("; classes weighted balanced" if self.class_weight == "balanced" else "")

    def default_folds(self, y: np.ndarray) -> int:
        """K for K-fold cross-validation where the run does not set it (FOLDS), for the table's
        target `y` (codes): 8 for several classes where one is rare (RARE_CLASS_ROWS). Whether
        the rare class can fill them beside the holdout is the run's to check (options.folds_of)."""
        if self.kind != Kind.MULTICLASS:
            return FOLDS[self.kind]
        return RARE_CLASS_FOLDS if self.class_counts(y).min() < RARE_CLASS_ROWS else FOLDS[self.kind]

    def class_counts(self, y: np.ndarray) -> np.ndarray:
        """Rows of each class in `y` (codes 0..K-1), a class with none counted 0."""
        return np.bincount(np.asarray(y).astype(np.int64), minlength=len(self.classes))

    def starts(self, family) -> tuple[dict[str, Any], ...]:
        """A catalog.Family's known-good first trials for this kind: its classes' own where it has them;
        where the task offers several objectives, a searching family's starts take them in turn,
        so a short budget trains both."""
        starts = family.class_start if self.is_classification and family.class_start is not None else family.start
        if not (self.objectives and family.any_objective):
            return starts
        return tuple({**start, OBJECTIVE: self.objectives[i % len(self.objectives)]} for i, start in enumerate(starts))

    def show(self, score: float | None) -> str:
        """A score as people read it (log-loss positive), four places; blank for none."""
        return "" if score is None else four_places(self.metric.shown(score))

    def score(self, y: np.ndarray, prediction: np.ndarray) -> float:
        """The search metric, higher is better; prediction: values, or class probabilities [rows, K]."""
        return self.metric.score(np.asarray(y), np.asarray(prediction, dtype=np.float64))

    def loss(self, y: np.ndarray, prediction: np.ndarray) -> float:
        """What a model is trained to lower (`objective`): mean squared or absolute error, or log-loss.
        A count's Poisson models are read by the run's own (squared error), as every fold is."""
        y, prediction = np.asarray(y), np.asarray(prediction, dtype=np.float64)
        if self.is_classification:
            return _log_loss(y, prediction)
        return float(self.row_losses(y, prediction).mean())

    def report(self, y: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
        """Every metric of the kind, as people read them (log-loss positive)."""
        prediction = np.asarray(prediction, dtype=np.float64)
        return {m.name: m.shown(m.score(np.asarray(y), prediction)) for m in self.metrics.values()}

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """A model's output as this task's prediction: numbers as they are, class probabilities
        as [rows, K] (a binary model's single column is P(second class); 1 - it comes first)."""
        raw = np.asarray(raw, dtype=np.float64)
        if not self.is_classification or raw.ndim == 2:
            return raw
        return np.column_stack([1.0 - raw, raw])

    def labels(self, prediction: np.ndarray) -> np.ndarray:
        """The predicted values in the target's own terms: a number, or the likeliest class's label."""
        prediction = np.asarray(prediction, dtype=np.float64)
        if not self.is_classification:
            return prediction
        return np.asarray(self.classes, dtype=object)[prediction.argmax(axis=1)]

    def encode(self, column: pd.Series) -> np.ndarray:
        """A target column as y: numbers, or class codes 0..K-1 (floats); NaN where a value is
        missing, not a number, or a class the task does not know."""
        if not self.is_classification:
            return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        codes = pd.Index(self.classes).get_indexer(column).astype(np.float64)
        if (codes < 0).any() and pd.api.types.is_numeric_dtype(column):  # 1.0 or "1" read back as the number 1
            as_numbers = pd.to_numeric(pd.Series(self.classes, dtype=object), errors="coerce")
            codes = column.astype(np.float64).map({v: i for i, v in enumerate(as_numbers) if pd.notna(v)}) \
                .to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        codes[codes < 0] = np.nan
        return codes

    def row_weights(self, y: np.ndarray) -> np.ndarray | None:
        """Training weights per row: None (every row counts once), under "balanced" each class's
        rows weigh n / (K * rows of the class), scikit-learn's rule, so every class adds up to the
        same total; or each class's own weight. Only training uses them; scores and early stopping
        do not."""
        if self.class_weight == "none" or not self.is_classification:
            return None
        codes = np.asarray(y, dtype=np.int64)
        if isinstance(self.class_weight, tuple):
            return np.asarray(self.class_weight, dtype=np.float64)[codes]
        counts = self.class_counts(codes).astype(np.float64)
        per_class = len(codes) / (len(self.classes) * np.maximum(counts, 1.0))
        return per_class[codes]

    def prior(self, y_train: np.ndarray, rows: int) -> np.ndarray:
        """What knowing nothing but the training target predicts for `rows` rows: its mean (its
        median under MAE: a new user's mean read as "the floor a model must clear" for MAE, which
        the median sits below), or each class's share. Its score is the base rate every model's
        score is read against."""
        y_train = np.asarray(y_train, dtype=np.float64)
        if not self.is_classification:
            return np.full(rows, float(np.median(y_train) if self.prior_name == "median" else np.mean(y_train)))
        shares = self.class_counts(y_train) / len(y_train)
        return np.tile(shares, (rows, 1))

    def greedy_view(self, y: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """What the greedy ensemble's loss reads of predictions [C, rows(, K)], as [C, rows]: the
        values for numbers, each row's true-class probability for classes (log-loss reads
        nothing else, so its rounds average K times fewer numbers)."""
        if not self.is_classification:
            return predictions
        codes = np.asarray(y, dtype=np.int64)
        return np.take_along_axis(predictions, codes[None, :, None], axis=2)[..., 0]

    def greedy_losses(self, y: np.ndarray, view: np.ndarray) -> np.ndarray:
        """Each candidate's loss [C] (lower is better) from its `greedy_view` [C, rows]: the
        objective's (squared or absolute error for numbers; log-loss for classes, a proper score
        whatever the search metric: an ensemble of probabilities is chosen by it)."""
        return self.row_losses(y, view).mean(axis=1)

    def row_losses(self, y: np.ndarray, view: np.ndarray) -> np.ndarray:
        """`greedy_losses` row by row [C, rows] (or [rows] for one prediction)."""
        if self.is_classification:
            return -np.log(np.maximum(view, PROBABILITY_FLOOR))  # (np.clip is several times slower)
        return np.abs(view - y) if self._measured == Objective.ABSOLUTE_ERROR else (view - y) ** 2

    def strata(self, y: np.ndarray) -> np.ndarray | None:
        """What the holdout and the folds are stratified by: the class, for classes (so each
        keeps its share everywhere); nothing for numbers."""
        return y if self.is_classification else None

    def to_json(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "classes": [plain_label(c) for c in self.classes], "metric": self.metric_name,
                "class_weight": list(self.class_weight) if isinstance(self.class_weight, tuple) else self.class_weight,
                "counts": self.counts}

    @classmethod
    def from_json(cls, record: dict[str, Any] | None) -> Task:
        if not record:  # written before tasks existed: regression
            return cls()
        weight = record.get("class_weight", "none")
        return cls(Kind(record["kind"]), tuple(record.get("classes", ())), record.get("metric", "r2"),
                   tuple(weight) if isinstance(weight, list) else weight, bool(record.get("counts", False)))


def four_places(value: float) -> str:
    """A score as shown everywhere: four places, and no sign on one that rounds to nothing."""
    return f"{value:.4f}".replace("-0.0000", "0.0000")


def plain_label(value: Any) -> Any:
    """A class label as JSON keeps it (numpy scalars to Python's)."""
    return value.item() if isinstance(value, np.generic) else value


NUMBERS = Task()  # regression by R²: what a family trains when no task is named
