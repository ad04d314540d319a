"""What Optuna may choose for each family. Driver-side: plain dicts, no model libraries.

Tree families get a generous round cap and early stopping instead of a searched round
count (see the family modules), so trials spend their time on shapes that matter.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the NN engine reads NN_WIDTHS on machines without optuna
    import optuna

NN_WIDTHS = (32, 64, 128, 256)


def suggest_nn(trial: optuna.Trial) -> dict[str, Any]:
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
    }


def suggest_xgboost(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 50.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
    }


def suggest_lightgbm(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 5, 200, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.3, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
    }


def suggest_catboost(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "depth": trial.suggest_int("depth", 3, 8),
        "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 0.5, 30.0, log=True),
        "random_strength": trial.suggest_float("random_strength", 0.1, 10.0, log=True),
        "bagging_temperature": trial.suggest_float("bagging_temperature", 0.0, 1.0),
    }


SUGGEST = {"nn": suggest_nn, "xgboost": suggest_xgboost, "lightgbm": suggest_lightgbm, "catboost": suggest_catboost}


def params_from_trial(family: str, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Rebuild the model params of a finished trial from its recorded Optuna params."""
    import optuna

    return SUGGEST[family](optuna.trial.FixedTrial(trial.params))
