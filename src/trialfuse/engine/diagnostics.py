"""The diagnostics probe: train the best NN config once more, watching what it learns.

Operators decide what to search next from this: whether gradients reach the first layer,
whether units died, whether the network beats predicting the mean. The probe trains on
the first CV fold (its validation rows give the val loss) with the trial's seed, records
per epoch the losses and each hidden layer's gradient norm, and describes the restored
best network: weights, activations on the training rows, dead units, BatchNorm's running
statistics. Runs in a worker (it imports torch).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from trialfuse.engine.families import mlp
from trialfuse.task import NUMBERS, Task

DEAD_FRACTION_WARNING = 0.5  # a hidden layer with at least this share of dead units
VANISHING_RATIO = 1e-3  # first-layer gradient norm below this share of the head's
EXPLODING_NORM = 1e3  # any layer's gradient norm above this


def diagnose(params: dict[str, Any], X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray,
             y_val: np.ndarray, *, seed: int, device: str = "cpu", threads: int | None = None,
             task: Task = NUMBERS, categorical: Sequence[int] = (), deadline: float | None = None) -> dict[str, Any]:
    """Train once with `params` (category columns `categorical` read as the search reads them)
    and return the diagnostics (JSON-ready) with their warnings; past `deadline` (time.time())
    the training stops (DeadlineReached)."""
    epochs: list[dict[str, Any]] = []

    def record(net: mlp.MLP, train_loss: float, val_loss: float | None) -> None:
        norms = [_norm(layer.weight.grad, None if layer.bias is None else layer.bias.grad) for layer in _linears(net)]
        epochs.append({"train_loss": train_loss, "val_loss": val_loss, "grad_norm": norms})

    fitted = mlp.fit(params, X_train, y_train, X_val, y_val, device=device, threads=threads, seed=seed,
                     on_epoch=record, task=task, categorical=categorical, deadline=deadline)
    model = fitted.model
    net: mlp.MLP = model.net
    layers = _describe_layers(model, net, X_train)
    val_pred = task.probabilities(mlp.predict(model, X_val))
    units = "log-loss" if task.is_classification else f"mean {task.loss_name} of the standardized target"
    score, prior = task.score(y_val, val_pred), task.score(y_val, task.prior(y_train, len(y_val)))
    report = {"params": mlp.with_defaults(params), "seed": seed, "train_rows": len(y_train), "val_rows": len(y_val),
              "best_epoch": fitted.best_rounds, "epochs_run": fitted.rounds_run,
              "metric": task.metric.label, "val_score": task.metric.shown(score),
              "prior_score": task.metric.shown(prior), "prior": task.prior_name, "beats_prior": bool(score > prior),
              "loss_units": units,
              "epochs": epochs,
              "layers": layers}
    report["warnings"] = find_warnings(report)
    return report


def _linears(net: mlp.MLP) -> list[nn.Linear]:
    return [m for m in net.layers if isinstance(m, nn.Linear)]


def _norm(*tensors: torch.Tensor | None) -> float:
    squares = [float(torch.sum(t.double() ** 2)) for t in tensors if t is not None]
    return math.sqrt(sum(squares)) if squares else 0.0


def _describe_layers(model: mlp.ScaledMLP, net: mlp.MLP, X_train: np.ndarray) -> list[dict[str, Any]]:
    """Per hidden layer of the restored network: weights, activations on the training rows, dead
    units (never positive before the activation), BatchNorm running statistics."""
    modules = list(net.layers)
    captured: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, inputs, _out, i=i: captured.__setitem__(i, inputs[0].detach()))
             for i, m in enumerate(modules) if isinstance(m, nn.ReLU | nn.LeakyReLU)]
    mlp.predict(model, X_train)
    for hook in hooks:
        hook.remove()
    layers = []
    for i, (index, pre) in enumerate(sorted(captured.items())):
        linear, norm, activation = modules[index - 2], modules[index - 1], modules[index]
        post = activation(pre)
        weight = linear.weight.detach().double()
        layers.append({
            "layer": i, "width": int(weight.shape[0]),
            "weight_mean": float(weight.mean()), "weight_std": float(weight.std()),
            "weight_abs_max": float(weight.abs().max()),
            "activation_mean": float(post.mean()), "activation_std": float(post.std()),
            "dead_fraction": float((pre <= 0).all(dim=0).double().mean()),
            "bn_running_mean": norm.running_mean.double().tolist(),
            "bn_running_var": norm.running_var.double().tolist(),
        })
    return layers


def find_warnings(report: dict[str, Any]) -> list[str]:
    """What an operator should look at: dead units, vanishing or exploding gradients, a network
    no better than the mean."""
    warnings = []
    for layer in report["layers"]:
        if layer["dead_fraction"] >= DEAD_FRACTION_WARNING:
            warnings.append(f"dead units: {layer['dead_fraction']:.0%} of hidden layer {layer['layer']}'s "
                            f"{layer['width']} units are never active on the training rows")
    norms = np.array([e["grad_norm"] for e in report["epochs"]], dtype=np.float64)  # [epochs, linears]
    if norms.size:
        if not np.isfinite(norms).all() or norms.max() > EXPLODING_NORM:
            warnings.append(f"exploding gradients: a gradient norm reached {np.nanmax(norms):.3g}")
        first, head = np.median(norms[:, 0]), np.median(norms[:, -1])
        if head > 0 and first < VANISHING_RATIO * head:
            warnings.append(f"vanishing gradients: the first layer's median gradient norm ({first:.2e}) is below "
                            f"{VANISHING_RATIO:g} of the output layer's ({head:.2e})")
    if not report["beats_prior"]:
        prior = report.get("prior", "mean or class shares")  # a probe written before it was kept: either
        warnings.append(f"no better than the prior (the training target's {prior}): validation "
                        f"{report['metric']} {report['val_score']:.4f} against {report['prior_score']:.4f} "
                        f"on the probe fold")
    return warnings
