"""The model families, one row each: the only place that lists them.

A row names the family, the engine module that trains it (`trialfuse.engine.families.<engine>`:
fit / predict / save / load), its search space, and how the scheduler treats it. Adding a
family is a row here and one engine module. Driver-side and library-free: the search
spaces are plain functions of a trial (Optuna's, a `FixedTrial`, or `RandomTrial` for the
benchmark), so nothing here imports optuna or a model library.
"""
from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NN_WIDTHS = (32, 64, 128, 256)
NN_BATCH_SIZES = (0, 256, 512, 1024, 2048)  # rows per step; 0: the whole fold (the source's full batch)


def suggest_nn(trial) -> dict[str, Any]:
    depth = trial.suggest_int("n_layers", 2, 4)
    widths = [trial.suggest_categorical(f"width_{i}", NN_WIDTHS) for i in range(depth)]
    return {
        "hidden_layers": widths,
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "epochs": trial.suggest_int("epochs", 30, 200, step=10),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "adamw"]),
        "gradient_clip": trial.suggest_float("gradient_clip", 0.5, 5.0),
        "early_stopping_patience": trial.suggest_int("early_stopping_patience", 5, 20),
        "min_delta": trial.suggest_float("min_delta", 0.0, 1e-3),
        "use_leaky_relu": trial.suggest_categorical("use_leaky_relu", [False, True]),
        "batch_size": trial.suggest_categorical("batch_size", NN_BATCH_SIZES),  # last: earlier draws keep their order
    }


# Boosting rates start at 0.03: rounds (and time) grow as the rate shrinks, and below it a
# trial costs 50-100 fold-seconds on the 20,000-row reference table (2,000 rounds) for at
# most 0.001 of CV R² over 0.03-0.07; under a budget those seconds buy more trials.
MIN_BOOSTING_RATE = 0.03


def suggest_xgboost(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", MIN_BOOSTING_RATE, 0.3, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 50.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
    }


def suggest_lightgbm(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", MIN_BOOSTING_RATE, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 5, 200, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.3, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        # random split thresholds (LightGBM's extra_trees): errors that differ from the other
        # boosters', which is what the ensemble needs (see STARTS)
        "extra_trees": trial.suggest_categorical("extra_trees", [False, True]),
    }


CATBOOST_BORDERS = (32, 64, 128, 254)


def suggest_catboost(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", MIN_BOOSTING_RATE, 0.3, log=True),
        "depth": trial.suggest_int("depth", 3, 8),
        "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 0.5, 30.0, log=True),
        "random_strength": trial.suggest_float("random_strength", 0.1, 10.0, log=True),
        "bagging_temperature": trial.suggest_float("bagging_temperature", 0.0, 1.0),
        # bins per feature: each round's cost follows it (one fold of the 20,000-row reference
        # table: 3.9 s at CatBoost's default 254, 2.3 s at 128, 1.6 s at 64; R² 0.429, 0.431, 0.429)
        "border_count": trial.suggest_categorical("border_count", CATBOOST_BORDERS),
    }


def suggest_hgb(trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", MIN_BOOSTING_RATE, 0.3, log=True),
        "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 4, 128, log=True),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 200, log=True),
        "l2_regularization": trial.suggest_float("l2_regularization", 1e-3, 30.0, log=True),
        "max_features": trial.suggest_float("max_features", 0.3, 1.0),
    }


def suggest_forest(trial) -> dict[str, Any]:
    """The forests' shared shape: features per split, leaf size, and a cap on leaves (an
    unbounded forest on 20,000 rows is ~30 MB a fold model, kept per trial)."""
    return {
        "max_features": trial.suggest_float("max_features", 0.2, 1.0),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 40, log=True),
        "max_leaf_nodes": trial.suggest_categorical("max_leaf_nodes", FOREST_LEAVES),
    }


FOREST_LEAVES = (256, 1024, 4096)


def suggest_random_forest(trial) -> dict[str, Any]:
    # rows drawn per tree: its cost follows them (one fold of the reference table, 100 trees on one
    # core: 17 s at half the rows and half the features)
    return {**suggest_forest(trial), "max_samples": trial.suggest_float("max_samples", 0.2, 1.0)}


# Each study begins with a short portfolio of known-good configurations, cheapest first, asked
# before TPE's own (random) start-up trials, so a short budget has a sound model of every family
# early and TPE starts from good points (FLAML starts every learner at a low-cost configuration
# for the same reason; AutoGluon starts from a portfolio chosen on hundreds of datasets):
# 1. the library's defaults with early stopping instead of a fixed round count; where the
#    default rate converges slowly, first at twice the rate (about half the rounds);
# 2. then two configurations from AutoGluon's zero-shot portfolio (hyperparameter_portfolio_
#    zeroshot_2023 in autogluon.tabular.configs, learned with TabRepo on 200 datasets), each
#    clipped into our search space (where our space has a parameter AutoGluon's entry does
#    not set, the library's default): among its high-priority ones, those with a learning
#    rate of at least 0.045, higher first. Its slow low-rate ones (0.012-0.03) cost 100-325
#    fold-seconds a trial on the 20,000-row reference table and scored below the defaults.
# The same starts serve classes: they set shape and rate, not the loss (each family's engine picks
# the objective from the task), AutoGluon's portfolio is one list for every problem type (TabRepo,
# Salinas & Erickson, AutoML 2024: chosen on 200 classification and regression datasets), and the
# libraries' defaults are the same for their classifiers. Two exceptions (CLASS_STARTS): on log-loss
# LightGBM and CatBoost at twice their rate lose more than the time they save is worth, so for
# classes LightGBM starts at its defaults and CatBoost at its default rate (with the half bins, its
# GPU default: a bands fold took 1.5-2.5 times the doubled start's time, with 254 bins 2.6 times).
# LIGHTGBM_XT: LightGBM has one more start, the first of AutoGluon's GBM entries (its defaults at
# AutoGluon's rate 0.05 with random split thresholds). Alone it scores below the defaults, but its
# errors differ from the other members', so the average gains where it is kept.
# The NN's start (the one of our own) was re-checked on classes too: it beats its defaults there.
# Each of these measured: bench/results/HISTORY.md, "Figures that lived in code comments" (and
# "CatBoost's class start at its default rate").
STARTS: dict[str, tuple[dict[str, Any], ...]] = {
    # the MLP's DEFAULTS (engine/families/mlp.py) in slices of 1,024 rows at twice the rate, light
    # dropout and a patience of 10. Whole-fold steps (the defaults, or this at ten times the rate)
    # are few for the epochs they cost; AutoGluon's 512-row slices score alike at twice the time
    # (bench/results/HISTORY.md, "Figures that lived in code comments").
    "nn": ({"n_layers": 2, "width_0": 128, "width_1": 64, "learning_rate": 2e-3, "batch_size": 1024, "dropout": 0.1,
            "epochs": 100, "weight_decay": 1e-6, "optimizer": "adam", "gradient_clip": 5.0,
            "early_stopping_patience": 10, "min_delta": 0.0, "use_leaky_relu": False},
           {"n_layers": 4, "width_0": 128, "width_1": 128, "width_2": 128, "width_3": 128,  # AutoGluon NN_TORCH
            "learning_rate": 2.7e-3, "batch_size": 512, "dropout": 0.1, "epochs": 100,  # _r79 (108 wide, elu)
            "weight_decay": 1e-6, "optimizer": "adam", "gradient_clip": 5.0, "early_stopping_patience": 15,
            "min_delta": 0.0, "use_leaky_relu": False}),
    "xgboost": ({"learning_rate": 0.3, "max_depth": 6, "min_child_weight": 1.0, "subsample": 1.0,
                 "colsample_bytree": 1.0, "reg_lambda": 1.0, "reg_alpha": 1e-3},  # XGBoost's defaults
                {"learning_rate": 0.0878, "max_depth": 5, "min_child_weight": 1.0, "subsample": 1.0,  # AutoGluon
                 "colsample_bytree": 0.663, "reg_lambda": 1.0, "reg_alpha": 1e-3},  # XGB _r89
                {"learning_rate": 0.0779, "max_depth": 6, "min_child_weight": 1.08, "subsample": 1.0,  # AutoGluon
                 "colsample_bytree": 0.633, "reg_lambda": 1.0, "reg_alpha": 1e-3}),  # XGB _r22
    "lightgbm": ({"learning_rate": 0.2, "num_leaves": 31, "min_data_in_leaf": 20, "feature_fraction": 1.0,
                  "bagging_fraction": 1.0, "lambda_l2": 1e-3, "extra_trees": False},  # LightGBM's defaults at
                 {"learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 20, "feature_fraction": 1.0,
                  "bagging_fraction": 1.0, "lambda_l2": 1e-3, "extra_trees": False},  # twice the rate, then its own
                 {"learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20, "feature_fraction": 1.0,
                  "bagging_fraction": 1.0, "lambda_l2": 1e-3, "extra_trees": True},  # AutoGluon GBM XT (LIGHTGBM_XT)
                 {"learning_rate": 0.0786, "num_leaves": 128, "min_data_in_leaf": 12, "feature_fraction": 0.46,
                  "bagging_fraction": 1.0, "lambda_l2": 1e-3, "extra_trees": True},  # AutoGluon GBM _r42 (198 leaves)
                 {"learning_rate": 0.0471, "num_leaves": 89, "min_data_in_leaf": 56, "feature_fraction": 0.625,
                  "bagging_fraction": 1.0, "lambda_l2": 1e-3, "extra_trees": False}),  # AutoGluon GBM _r130
    "catboost": ({"learning_rate": 0.2, "depth": 6, "l2_leaf_reg": 3.0, "random_strength": 1.0,
                  "bagging_temperature": 1.0, "border_count": 128},  # CatBoost's defaults at twice the
                 # rate and half the bins (its GPU default): about a third of the time, so a short
                 # budget has a CatBoost model; then its defaults as they are
                 {"learning_rate": 0.1, "depth": 6, "l2_leaf_reg": 3.0, "random_strength": 1.0,
                  "bagging_temperature": 1.0, "border_count": 254},
                 {"learning_rate": 0.0933, "depth": 5, "l2_leaf_reg": 3.75, "random_strength": 1.0,
                  "bagging_temperature": 1.0, "border_count": 254},  # AutoGluon CAT _r163
                 {"learning_rate": 0.0686, "depth": 6, "l2_leaf_reg": 2.15, "random_strength": 1.0,
                  "bagging_temperature": 1.0, "border_count": 254}),  # AutoGluon CAT _r177
    # the forests: AutoGluon's RF/XT defaults (300 trees, max_leaf_nodes 15000, all features for numbers) made
    # cheap enough for a 60 s budget on 2 cores: 150 trees (forests.TREES), 1024 leaves, half the features, and for
    # the random forest half the rows per tree; extra trees cost about a quarter of a random forest on the same rows
    "random_forest": ({"max_features": 0.5, "min_samples_leaf": 3, "max_leaf_nodes": 1024, "max_samples": 0.5},),
    "extra_trees": ({"max_features": 0.5, "min_samples_leaf": 3, "max_leaf_nodes": 1024},),
    "hgb": ({"learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20, "l2_regularization": 1e-3,
             "max_features": 1.0},),  # scikit-learn's defaults
}
CLASS_STARTS: dict[str, tuple[dict[str, Any], ...]] = {  # classes' own starts, where they differ
    "lightgbm": STARTS["lightgbm"][1:],
    # CatBoost's first at its default rate; its second (its defaults) would repeat it but for the bins
    "catboost": ({**STARTS["catboost"][0], "learning_rate": 0.1}, *STARTS["catboost"][2:]),
}


class GpuUse(enum.Enum):
    """How a family uses a GPU worker (transport.placement decides from it)."""

    ONLY = "only"  # where the pool has GPU workers only they take it (a CPU would hold a fold for minutes)
    CAN = "can"  # on GPU workers for large tables (its GPU learner pays off there), else CPU
    IF_BUILT = "if_built"  # as CAN, if every GPU worker's build of its library has the CUDA learner
    NO = "no"  # CPU workers only


NN = "nn"  # the network's row: the fused-trainer bench and the source's dialect (which had no other) name it


@dataclass(frozen=True)
class Family:
    name: str  # what --models, the study, results.json and the report call it
    engine: str  # the module under trialfuse.engine.families that trains it
    suggest: Callable[[Any], dict[str, Any]]  # its search space: a trial -> model params
    batched: bool = False  # many trials' folds train together in one task: its engine module has fit_many
    in_flight: int = 4  # trials asked ahead of the oldest unfinished one: enough work for every worker
    default: bool = True  # searched when --models is not given
    diagnostics: bool = False  # its best config gets its engine module's `diagnose` probe (diagnostics.json)
    color: str = "tab:gray"  # in the report's plots
    cost: int = 1  # rough time of one fold, relative: who runs the one trial a run with no model yet needs
    start: tuple[dict[str, Any], ...] = ()  # first trials, before TPE's own (raw Optuna params; see STARTS)
    class_start: tuple[dict[str, Any], ...] | None = None  # for classes, where they differ (CLASS_STARTS)
    gpu: GpuUse = GpuUse.NO  # how it uses a GPU worker
    exported: bool = False  # its kept fold models are exported when served (not copied): ~1 s a fold
    first_trials: int = 2  # complete trials it gets at equal compute before its share follows its progress
    any_objective: bool = False  # its engine trains on any number objective: it searches those a task offers


FAMILIES: dict[str, Family] = {row.name: row for row in (
    Family(NN, "network", suggest_nn, batched=True, in_flight=8, diagnostics=True, color="tab:blue", cost=4,
           start=STARTS[NN], gpu=GpuUse.ONLY, exported=True, first_trials=1),
    Family("xgboost", "xgboost_trees", suggest_xgboost, color="tab:orange", cost=2, start=STARTS["xgboost"],
           gpu=GpuUse.CAN, any_objective=True),
    Family("lightgbm", "lightgbm_trees", suggest_lightgbm, color="tab:green", cost=1, start=STARTS["lightgbm"],
           class_start=CLASS_STARTS["lightgbm"], gpu=GpuUse.IF_BUILT, any_objective=True),
    Family("catboost", "catboost_trees", suggest_catboost, color="tab:red", cost=3, start=STARTS["catboost"],
           class_start=CLASS_STARTS["catboost"], gpu=GpuUse.CAN, any_objective=True),
    Family("hgb", "hgb_trees", suggest_hgb, default=False, color="tab:purple", cost=2, start=STARTS["hgb"],
           any_objective=True),
    Family("extra_trees", "extra_trees", suggest_forest, default=False, color="tab:olive", cost=2,
           start=STARTS["extra_trees"]),
    Family("random_forest", "random_forest", suggest_random_forest, default=False, color="tab:brown", cost=3,
           start=STARTS["random_forest"]),
)}
DEFAULT_MODELS = tuple(name for name, row in FAMILIES.items() if row.default)


# Parameters a family's space gained after studies were written, at the value their older trials
# trained with: such a trial (a resumed run, a saved study) still rebuilds.
ADDED_LATER: dict[str, dict[str, Any]] = {NN: {"batch_size": 0}, "lightgbm": {"extra_trees": False}}


# A params key no search space has: train on at most this many columns, those most related to the
# target in the rows trained on (engine/column_screen.py). A wide table's first trials and a run's
# last-chance trial set it (driver/last_chance.py); the trial records it as a user attribute of the same name.
SCREEN = "screen"


# A params key the driver adds where the task offers several objectives (Task.objectives): what the
# boosting families train on, a searched choice after their own parameters (so their draws keep
# their order); the engine reads it into the task (column_screen.Screening.fit) and no library sees it.
OBJECTIVE = "objective"


def suggest(family: str, trial, objectives: Sequence[str] = ()) -> dict[str, Any]:
    """A trial's model params: the family's space, and its objective where `objectives` offers a
    choice and the family trains on any (Family.any_objective)."""
    params = FAMILIES[family].suggest(trial)
    if len(objectives) > 1 and FAMILIES[family].any_objective:
        params[OBJECTIVE] = trial.suggest_categorical(OBJECTIVE, list(objectives))
    return params


def screens(params: dict[str, Any] | None, width: int) -> bool:
    """Whether a model of these params trains on fewer columns than a table of `width` has."""
    most = (params or {}).get(SCREEN)
    return bool(most) and width > int(most)


def params_from_trial(family: str, trial) -> dict[str, Any]:
    """Rebuild the model params of a finished Optuna trial from its recorded params (and its screen)."""
    import optuna

    params = FAMILIES[family].suggest(optuna.trial.FixedTrial({**ADDED_LATER.get(family, {}), **trial.params}))
    if OBJECTIVE in trial.params:
        params[OBJECTIVE] = trial.params[OBJECTIVE]
    return {**params, SCREEN: trial.user_attrs[SCREEN]} if SCREEN in trial.user_attrs else params


class RandomTrial:
    """Draws from a search space without Optuna (uniform, log-uniform where the space says so):
    the benchmark samples the catalog's own NN space on machines that have only numpy and torch."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        if log:
            return int(min(high, max(low, round(math.exp(self.rng.uniform(math.log(low), math.log(high)))))))
        return int(low + step * self.rng.integers(0, (high - low) // step + 1))

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        if log:
            return float(math.exp(self.rng.uniform(math.log(low), math.log(high))))
        return float(self.rng.uniform(low, high))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = choices[int(self.rng.integers(0, len(choices)))]
        return value.item() if hasattr(value, "item") else value
