"""The NN family's network: an MLP trained on one device, one model at a time
(`network.py` is the family's module: this, trained many at once, and its probe).

Blocks of Linear -> BatchNorm1d -> ReLU/LeakyReLU -> Dropout and a linear head: one output
for numbers (squared error on the standardized target, absolute under --metric mae), one logit per class for classes
(softmax cross-entropy, optionally class-weighted; see `Head`). Dropout
masks are a hash of the model's seed, draw, row and unit (engine/dropout.py), so the fused
trainer draws the same masks for it in any batch. The training fold lives on the device (no
DataLoader); an epoch is one step on all of it (`batch_size` 0, the source's full batch: a
handful of matmuls on a GPU) or one step per slice of `batch_size` rows in an order every model
of that fold size shares (`batch_order`), so fused and alone still train alike. Early stopping
watches the validation loss after each epoch (BatchNorm in eval mode, running statistics;
unweighted) and restores the best epoch's weights.

What the network reads is `InputCoding`: numbers imputed and standardized with training-fold
statistics, category columns as one input per frequent level; a numeric target is standardized
too. The saved model carries all of it, so it takes raw feature values (category codes as the
table encodes them) and returns predictions in target units, or class probabilities [rows, K].
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trialfuse.engine.dropout import DropoutStream, dropout_mask, dropout_scale, dropout_threshold
from trialfuse.engine.families import Fitted, check_deadline
from trialfuse.engine.input_coding import INDICES, PARTS, InputCoding, code_inputs
from trialfuse.task import NUMBERS, Objective, Task

LEAKY_SLOPE = 0.01
DEADLINE_CHECK_STEPS = 64  # steps between looks at the clock within an epoch (see fit)
BATCH_ORDER_SEED = 0x5EED  # the slices' order: a function of the epoch alone, shared by every model
MIN_STEPS = 8  # steps an epoch at least when sliced: a small fold is cut finer than `batch_size`
MIN_SLICE = 32  # rows a slice holds at least (a fold smaller than this takes one step)
DEFAULTS: dict[str, Any] = {  # what a job leaves out (the search always sets every key)
    "hidden_layers": [128, 64],  # units per hidden layer; a fused batch holds one depth unless padded
    "learning_rate": 1e-3,  # Adam's usual start; full-batch steps are few, so not smaller
    "batch_size": 0,  # rows per step; 0: the whole fold, one step an epoch
    "dropout": 0.0,  # share of hidden units zeroed per training step
    "epochs": 100,  # budget; early stopping usually ends sooner
    "weight_decay": 0.0,  # L2 in the gradient (adam) or decoupled (adamw)
    "optimizer": "adam",  # or "adamw"
    "gradient_clip": 0.0,  # max gradient norm per model; 0 = no clipping
    "early_stopping_patience": 15,  # epochs without a better validation loss before stopping
    "min_delta": 0.0,  # how much better counts as better
    "use_leaky_relu": False,  # LeakyReLU(0.01) instead of ReLU: no unit can die completely
}


def with_defaults(params: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, **params}


def batch_order(n_rows: int, batch_size: int, epoch: int,
                device: torch.device | str = "cpu") -> list[torch.Tensor] | None:
    """The row slices of one epoch's steps (None: one step on every row, `batch_size` 0): a
    shuffle seeded by the epoch alone, cut into equal slices (to a row), so a model takes the
    same steps alone or fused beside others of its fold size, and no step is a sliver of a few
    rows (BatchNorm needs two). A slice holds at most `batch_size` rows and at most an eighth of
    the fold (MIN_STEPS), but not fewer than about MIN_SLICE: at a rate chosen for slices, one
    whole-fold step an epoch leaves a fold smaller than `batch_size` untrained (AutoGluon, too,
    shrinks its NN's batch on small tables). Drawn on the CPU (the same order on every device),
    put on `device`."""
    rows = slice_rows(n_rows, batch_size)
    if rows == 0:
        return None
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(BATCH_ORDER_SEED + epoch))
    return list(torch.tensor_split(order.to(device), math.ceil(n_rows / rows)))


def slice_rows(n_rows: int, batch_size: int) -> int:
    """Rows a step of `batch_order` takes on a fold of `n_rows` (0: the whole fold, one step an
    epoch). Models whose `batch_size` differ may step alike: on a 600-row fold 128 and 256 both
    give slices of 75 rows, so the fused trainer groups by this, not by `batch_size`."""
    if batch_size <= 0:
        return 0
    rows = min(batch_size, max(MIN_SLICE, n_rows // MIN_STEPS))
    return 0 if rows >= n_rows else rows


@dataclass(frozen=True)
class Head:
    """What the network's last layer says and how it learns: one output and squared (or, where
    the task's objective is absolute error, absolute) error on the standardized target (numbers),
    or one logit per class and softmax cross-entropy on the class codes (classes; binary too, as
    two logits). The one place the NN's task differs, for the one-at-a-time and the fused
    trainer alike."""

    outputs: int = 1
    classes: bool = False
    absolute: bool = False

    @classmethod
    def of(cls, task: Task) -> Head:
        if task.is_classification:
            return cls(len(task.classes), True)
        return cls(absolute=task.objective == Objective.ABSOLUTE_ERROR)

    def target_stats(self, y: np.ndarray) -> tuple[float, float]:
        """(centre, scale) the target is standardized with: mean and std; under absolute error
        the median and the MAD (1% of targets at 1e6 made the std 1e5, and the ordinary rows,
        1e-5 apart once divided by it, were one value to the network); codes are left as they are."""
        if self.classes:
            return 0.0, 1.0
        return robust_target_stats(y) if self.absolute else target_stats(y)

    def target_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """What the target is held in on the device: class codes as int64 once (the loss gathers
        by them every epoch), numbers in the model's dtype."""
        return torch.int64 if self.classes else dtype

    def loss(self, out: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The mean loss over the rows (the last dimension of y: [N], or [M, N] per model); out is
        [.., N] for numbers, [.., N, K] logits for classes; `weights` per row, as y (None: 1)."""
        if self.classes:
            rows = -torch.log_softmax(out, dim=-1).gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
        else:
            rows = (out - y).abs() if self.absolute else (out - y) ** 2
        return rows.mean(-1) if weights is None else (rows * weights).sum(-1) / weights.sum(-1)

    def in_units(self, out: torch.Tensor, y_mean: float, y_std: float) -> torch.Tensor:
        """The network's output as predictions: target units, or class probabilities."""
        return torch.softmax(out, dim=-1) if self.classes else out * y_std + y_mean


class SeededDropout(nn.Module):
    """Dropout whose masks come from the model's DropoutStream (not torch's global generator)."""

    def __init__(self, rate: float, stream: DropoutStream):
        super().__init__()
        self.rate = rate
        self.stream = stream
        self.threshold, self.scale = dropout_threshold(rate), dropout_scale(rate)  # once, not every step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        levels = self.stream.levels(tuple(x.shape), x.device)
        return x * dropout_mask(levels, self.threshold, self.scale, x.dtype)


class MLP(nn.Module):
    """Linear -> BatchNorm1d -> activation -> Dropout per hidden layer, then a linear head."""

    def __init__(self, n_features: int, hidden_layers: list[int], dropout: float, leaky: bool, seed: int = 0,
                 outputs: int = 1):
        super().__init__()
        self.stream = DropoutStream(seed)
        layers: list[nn.Module] = []
        width_in = n_features
        for width in hidden_layers:
            activation = nn.LeakyReLU(LEAKY_SLOPE) if leaky else nn.ReLU()
            layers += [nn.Linear(width_in, width), nn.BatchNorm1d(width), activation,
                       SeededDropout(dropout, self.stream)]
            width_in = width
        layers.append(nn.Linear(width_in, outputs))
        self.layers = nn.Sequential(*layers)
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, F] -> [N] (one output) or [N, K]
        out = self.layers(x)
        return out.squeeze(-1) if self.outputs == 1 else out


class ScaledMLP(nn.Module):
    """The MLP wrapped with its training fold's `InputCoding` and target statistics: raw features
    in, target units (or class probabilities) out."""

    def __init__(self, net: MLP, coding: InputCoding, y_mean: float, y_std: float, head: Head = Head()):
        super().__init__()
        self.net = net
        self.head = head
        self.coded = not coding.plain  # any "missing" or level inputs (else the inputs are the columns)
        for name in PARTS:  # float64 here; .to(dtype) gives the model's precision (the indices stay integers)
            self.register_buffer(name, torch.as_tensor(getattr(coding, name), dtype=torch.int64 if name in INDICES
                                                       else torch.float64))
        self.register_buffer("y_mean", torch.tensor(float(y_mean), dtype=torch.float64))
        self.register_buffer("y_std", torch.tensor(float(y_std), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, F] raw -> [N] or [N, K]
        z = code_inputs(x, *(getattr(self, name) for name in PARTS), self.coded)
        return self.head.in_units(self.net(z), self.y_mean, self.y_std)


def build_optimizer(net: nn.Module, p: dict[str, Any]) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if p["optimizer"] == "adamw" else torch.optim.Adam
    return kind(net.parameters(), lr=p["learning_rate"], weight_decay=p["weight_decay"])


def target_stats(y: np.ndarray) -> tuple[float, float]:
    return float(np.mean(y)), float(np.std(y)) or 1.0


def robust_target_stats(y: np.ndarray) -> tuple[float, float]:
    """The median, and the median absolute deviation scaled to a normal's std (its mean absolute
    deviation where half the values are one, as counts of mostly 0; 1 where all are)."""
    centre = float(np.median(y))
    deviation = np.abs(np.asarray(y, dtype=np.float64) - centre)
    return centre, 1.4826 * float(np.median(deviation)) or float(np.mean(deviation)) or 1.0


def new_net(n_features: int, p: dict[str, Any], seed: int, outputs: int = 1) -> MLP:
    """The initial network for a seed: fused and serial training both start from this."""
    torch.manual_seed(seed)
    return MLP(n_features, list(p["hidden_layers"]), float(p["dropout"]), bool(p["use_leaky_relu"]), seed, outputs)


def fit(params: dict[str, Any], X_train, y_train, X_val=None, y_val=None, *, device: str = "cpu",
        threads: int | None = None, seed: int = 0, rounds: int | None = None,
        dtype: torch.dtype = torch.float32, on_epoch: Callable[[MLP, float, float | None], None] | None = None,
        deadline: float | None = None, task: Task = NUMBERS, categorical: Sequence[int] = ()) -> Fitted:
    """Train one MLP; early stopping on (X_val, y_val), or exactly `rounds` epochs without them.
    Category columns (`categorical`) it reads as one input per frequent level (`InputCoding`).

    `on_epoch(net, train_loss, val_loss)` is called after each step, gradients still in place
    (the diagnostics probe reads them there)."""
    p = with_defaults(params)
    if threads:
        torch.set_num_threads(threads)
    coding = InputCoding.of(X_train, categorical)
    head = Head.of(task)
    y_mean, y_std = head.target_stats(y_train)
    dev = torch.device(device)
    weights = task.row_weights(y_train)
    weights = None if weights is None else torch.as_tensor(weights, dtype=dtype, device=dev)

    def tensors(X, y):
        xt = torch.as_tensor(coding.apply(X), dtype=dtype, device=dev)  # [N, width]
        yt = torch.as_tensor((y - y_mean) / y_std, dtype=head.target_dtype(dtype), device=dev)  # [N]
        return xt, yt

    xt, yt = tensors(X_train, y_train)
    net = new_net(coding.width, p, seed, head.outputs).to(device=dev, dtype=dtype)
    optimizer = build_optimizer(net, p)
    epochs = int(rounds if rounds is not None else p["epochs"])
    watch = X_val is not None
    if watch:
        xv, yv = tensors(X_val, y_val)
    best_loss, best_state, best_epoch, waited, ran = float("inf"), None, epochs, 0, 0
    for epoch in range(epochs):
        net.train()
        losses = []
        for step, rows in enumerate(batch_order(len(yt), int(p["batch_size"]), epoch, dev) or [None]):
            if step % DEADLINE_CHECK_STEPS == 0:  # an epoch of 900,000 rows in slices is seconds on a CPU:
                check_deadline(deadline)  # once every 8 epochs had overrun a 60 s budget by 36 s
            optimizer.zero_grad(set_to_none=True)
            picked = (xt, yt, weights) if rows is None else (
                xt[rows], yt[rows], None if weights is None else weights[rows])
            loss = head.loss(net(picked[0]), picked[1], picked[2])
            loss.backward()
            if p["gradient_clip"] and p["gradient_clip"] > 0:
                nn.utils.clip_grad_norm_(net.parameters(), p["gradient_clip"])
            optimizer.step()
            losses.append(loss.detach())
        loss = torch.stack(losses).mean()  # the epoch's training loss (its steps' mean)
        ran = epoch + 1
        if not watch:
            if on_epoch:
                on_epoch(net, float(loss.detach()), None)
            continue
        net.eval()
        with torch.no_grad():
            val_loss = float(head.loss(net(xv), yv))
        if on_epoch:
            on_epoch(net, float(loss.detach()), val_loss)
        if not np.isfinite(val_loss):
            break
        if val_loss < best_loss - p["min_delta"]:
            best_loss, best_epoch, waited = val_loss, ran, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            waited += 1
            if waited >= p["early_stopping_patience"]:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    model = ScaledMLP(net, coding, y_mean, y_std, head).to(device=dev, dtype=dtype).eval()
    return Fitted(model=model, best_rounds=best_epoch if watch else ran, rounds_run=ran)


def predict(model: nn.Module, X: np.ndarray) -> np.ndarray:
    like = next(iter(model.buffers()))
    with torch.no_grad():
        out = model(torch.as_tensor(np.asarray(X), dtype=like.dtype, device=like.device))
    return out.double().cpu().numpy()


def save(model: ScaledMLP, directory, name: str = "model.pt2") -> str:
    """Write a torch.export program: `torch.export.load(path).module()(x)` needs only torch."""
    model = copy.deepcopy(model).cpu().eval().requires_grad_(False)  # outputs convert with .numpy()
    features = model.x_mean.numel() - model.logged.numel()  # raw columns: the stats cover their logs too
    example = model.x_mean[:features].unsqueeze(0).repeat(4, 1)
    program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: torch.export.Dim.DYNAMIC}})
    torch.export.save(program, str(Path(directory) / name))
    return name


def load(path) -> nn.Module:
    if Path(path).suffix == KEPT_SUFFIX:
        return _from_kept(path)
    return torch.export.load(str(path)).module()


# A fold model the search keeps (for serving as the folds' mean) is written as its weights and
# shape: milliseconds, where an export takes about half a second, and most kept models are
# never served. Only a chosen one is exported, into best_model/ (`publish`).
KEPT_SUFFIX = ".kept"


def keep(model: ScaledMLP, directory) -> str:
    layers = [m.out_features for m in model.net.layers if isinstance(m, nn.Linear)][:-1]
    leaky = any(isinstance(m, nn.LeakyReLU) for m in model.net.layers)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    name = f"model{KEPT_SUFFIX}"
    torch.save({"n_features": int(model.net.layers[0].in_features),  # the network's inputs (coded width)
                "hidden_layers": layers, "leaky": leaky, "state": state,
                "outputs": model.head.outputs, "classes": model.head.classes, "absolute": model.head.absolute},
               Path(directory) / name)
    return name


def publish(source, directory, stem: str) -> str:
    """A kept fold model as served from best_model/: exported there as `<stem>.pt2`."""
    return save(_from_kept(source), directory, f"{stem}.pt2")


def _from_kept(path) -> ScaledMLP:
    kept = torch.load(str(path), weights_only=True)
    head = Head(kept.get("outputs", 1), kept.get("classes", False), kept.get("absolute", False))
    state = kept["state"]
    net = MLP(kept["n_features"], kept["hidden_layers"], 0.0, kept["leaky"], outputs=head.outputs)
    none, no_value = torch.zeros(0, dtype=torch.int64), state["x_mean"][:0]
    raw = state["x_mean"].numel() - state.get("logged", none).numel()  # the table's columns, before their logs
    state = {"numeric": torch.arange(raw), "missing": none, "level_columns": none,  # kept before the coding
             "level_codes": no_value, "logged": none, "log_scale": no_value,  # before the logs
             "code_columns": none, "code_values": no_value, "x_low": no_value.new_full((raw,), -torch.inf),
             "x_high": no_value.new_full((raw,), torch.inf), **state}  # before codes and stray values
    coding = InputCoding(**{name: state[name].numpy() for name in PARTS})
    model = ScaledMLP(net, coding, 0.0, 1.0, head)
    model = model.to(state["x_mean"].dtype)  # the precision it was trained in
    model.load_state_dict(state)
    return model.eval()
