"""M MLPs as one stacked model: batched matmuls over a leading model dimension.

Models may differ in widths (narrower layers are zero-padded to the widest; a mask keeps
the padding at exactly zero through training), depth (a shallower model passes its last
hidden layer's output unchanged through the layers it lacks: exact identities, so it trains
as it would alone), activation (ReLU is LeakyReLU with slope 0),
dropout rate, and rows (each model has its own fold; a batch holds models whose folds have the same number
of training rows, which K-fold gives in at most two sizes). BatchNorm keeps per-model running statistics and
updates them exactly as torch.nn.BatchNorm1d does; evaluation uses them.

Shapes: M models, N rows (padded), F features, H units of a layer (padded).
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from trialfuse.engine import dropout as drop
from trialfuse.engine.dropout import DROPOUT_LEVELS, dropout_mask, dropout_scale, dropout_threshold
from trialfuse.engine.families.mlp import MLP

BN_MOMENTUM, BN_EPS = 0.1, 1e-5


@dataclass
class StackedMLP:
    """Parameters and BatchNorm statistics of M MLPs, padded to common widths and depth."""

    weights: list[torch.Tensor]  # per layer [M, H_in, H_out]; the head is [M, H_last, K] (K = 1 for numbers)
    biases: list[torch.Tensor]  # per layer [M, 1, H_out]
    gammas: list[torch.Tensor]  # per hidden layer [M, 1, H]
    betas: list[torch.Tensor]  # per hidden layer [M, 1, H]
    running_mean: list[torch.Tensor]  # per hidden layer [M, 1, H]
    running_var: list[torch.Tensor]  # per hidden layer [M, 1, H]
    unit_masks: list[torch.Tensor]  # per hidden layer [M, 1, H]: 1 where the layer's output holds a real unit
    skips: list[torch.Tensor | None]  # per hidden layer [M, 1, 1] bool: the model lacks it; None: none does
    slopes: torch.Tensor  # [M, 1, 1] negative slope of the activation (0 = ReLU)
    dropout: torch.Tensor  # [M, 1, 1] int32: the level below which a unit drops (see DropoutStream)
    dropout_scale: torch.Tensor  # [M, 1, 1] 1 / (probability a unit is kept), from float64 on the host
    seeds: torch.Tensor  # [M] int64: each model's dropout seed (its DropoutStream's)
    depths: torch.Tensor  # [M] int64: each model's own number of hidden layers (draws per step)
    rates: list[float]  # per model, its dropout rate (host side)

    def params(self) -> list[torch.Tensor]:
        """The trained tensors, in a fixed order shared with their gradient masks."""
        return [*self.weights, *self.biases, *self.gammas, *self.betas]

    def param_masks(self) -> list[torch.Tensor]:
        """Per parameter, 1 where a real weight lives and 0 on padding (same shape as the parameter)."""
        ones_in = torch.ones_like(self.weights[0][:, :, :1])  # [M, F, 1]: every input feature is real
        ins = [ones_in, *(m.transpose(1, 2) for m in self.unit_masks)]  # [M, H_in, 1]
        owns = [1 - s.to(ones_in.dtype) if s is not None else torch.ones_like(ones_in[:, :1])  # [M, 1, 1]
                for s in [*self.skips, None]]  # 0: the model lacks the layer, so has no weights in it
        outs = [m * own for m, own in zip([*self.unit_masks, torch.ones_like(self.biases[-1])], owns, strict=True)]
        weight_masks = [i * o for i, o in zip(ins, outs, strict=True)]
        return [*weight_masks, *outs, *outs[:-1], *outs[:-1]]

    def buffers(self) -> list[torch.Tensor]:
        return [*self.running_mean, *self.running_var]

    def select(self, keep: torch.Tensor) -> StackedMLP:
        """The sub-batch of models `keep` (indices), as new tensors."""
        pick = lambda ts: [t[keep].detach().clone() for t in ts]  # noqa: E731
        host = keep.tolist()
        return StackedMLP(pick(self.weights), pick(self.biases), pick(self.gammas),
                          pick(self.betas), pick(self.running_mean), pick(self.running_var), pick(self.unit_masks),
                          [None if s is None else s[keep].clone() for s in self.skips],
                          self.slopes[keep].clone(), self.dropout[keep].clone(), self.dropout_scale[keep].clone(),
                          self.seeds[keep].clone(), self.depths[keep].clone(), [self.rates[i] for i in host])


def stack_widths(hidden_layers: list[list[int]]) -> list[int]:
    """The hidden widths of a stack of models with these hidden widths: per layer the widest
    model's, counting a shallower model's last width in the layers it passes its output through."""
    depth = max(len(h) for h in hidden_layers)
    if depth and not all(hidden_layers):
        raise ValueError("a model with no hidden layer has no output to carry through a deeper stack")
    return [max(h[i] if i < len(h) else h[-1] for h in hidden_layers) for i in range(depth)]


def stack_modules(nets: list[MLP], slopes: list[float], dropouts: list[float],
                  dtype: torch.dtype, device: torch.device) -> StackedMLP:
    """Copy M torch MLPs (Linear, BatchNorm1d, activation, Dropout blocks) into one stack.

    Starting from real nn.Modules means a fused model and a serial one built from the same
    seed start from the same weights, and draw the same dropout masks from the same seeds.
    A model shallower than the stack holds no weights in the hidden layers it lacks (the last
    ones); its head is the stack's head.
    """
    per_net = [_layers(net) for net in nets]
    real = [[lin.out_features for lin in linears[:-1]] for linears, _ in per_net]  # per model, its hidden widths
    hidden = stack_widths(real)
    n_in = per_net[0][0][0].in_features
    outputs = per_net[0][0][-1].out_features  # every model of a batch has its task's head
    weights, biases = [], []
    for i, (h_in, h_out) in enumerate(zip([n_in, *hidden], [*hidden, outputs], strict=True)):
        w = torch.zeros(len(nets), h_in, h_out, dtype=dtype, device=device)
        b = torch.zeros(len(nets), 1, h_out, dtype=dtype, device=device)
        for m, (linears, _) in enumerate(per_net):
            if i == len(hidden):
                lin = linears[-1]  # every model's head is the stack's
            elif i < len(real[m]):
                lin = linears[i]
            else:
                continue  # a layer this model lacks: an identity, no weights
            w[m, : lin.in_features, : lin.out_features] = lin.weight.detach().T
            b[m, 0, : lin.out_features] = lin.bias.detach()
        weights.append(w)
        biases.append(b)

    def bn_stack(attr: str, fill: float) -> list[torch.Tensor]:
        out = []
        for i, width in enumerate(hidden):
            t = torch.full((len(nets), 1, width), fill, dtype=dtype, device=device)
            for m, (_, norms) in enumerate(per_net):
                if i < len(norms):
                    values = getattr(norms[i], attr).detach()
                    t[m, 0, : values.numel()] = values
            out.append(t)
        return out

    masks = []
    for i, width in enumerate(hidden):
        mask = torch.zeros(len(nets), 1, width, dtype=dtype, device=device)
        for m, widths in enumerate(real):
            mask[m, 0, : widths[min(i, len(widths) - 1)]] = 1  # past its depth, the output it carries
        masks.append(mask)
    skips = []
    for i in range(len(hidden)):
        lacks = [i >= len(widths) for widths in real]
        skips.append(torch.tensor(lacks, device=device).view(-1, 1, 1) if any(lacks) else None)
    gammas = bn_stack("weight", 0.0)  # zero on padding, and in a layer a model lacks
    as_col = lambda v: torch.tensor(v, dtype=dtype, device=device).reshape(-1, 1, 1)  # noqa: E731
    thresholds = torch.tensor([dropout_threshold(d) for d in dropouts], dtype=torch.int32, device=device).view(-1, 1, 1)
    return StackedMLP(weights, biases, gammas, bn_stack("bias", 0.0),
                      bn_stack("running_mean", 0.0), bn_stack("running_var", 1.0), masks, skips, as_col(slopes),
                      thresholds, as_col([dropout_scale(d) for d in dropouts]),
                      torch.tensor([net.stream.seed for net in nets], dtype=torch.int64, device=device),
                      torch.tensor([len(w) for w in real], dtype=torch.int64, device=device), list(dropouts))


def unstack(model: StackedMLP, slot: int, n_features: int, hidden_layers: list[int], leaky: bool) -> MLP:
    """Model `slot` of the stack as a torch MLP of its real widths (the padding dropped), in
    the stack's precision: the fold model the search keeps (as `mlp.fit` would return it)."""
    net = MLP(n_features, hidden_layers, 0.0, leaky, outputs=model.weights[-1].shape[-1]).to(model.weights[0].dtype)
    linears, norms = _layers(net)
    with torch.no_grad():
        for i, linear in enumerate(linears):
            at = i if i < len(hidden_layers) else -1  # the head is the stack's last layer at any depth
            linear.weight.copy_(model.weights[at][slot, : linear.in_features, : linear.out_features].T)
            linear.bias.copy_(model.biases[at][slot, 0, : linear.out_features])
        for i, norm in enumerate(norms):
            width = norm.num_features
            for target, stacked in ((norm.weight, model.gammas), (norm.bias, model.betas),
                                    (norm.running_mean, model.running_mean), (norm.running_var, model.running_var)):
                target.copy_(stacked[i][slot, 0, :width])
    return net.eval()


def _layers(net: torch.nn.Module):
    modules = list(net.modules())
    linears = [m for m in modules if isinstance(m, torch.nn.Linear)]
    norms = [m for m in modules if isinstance(m, torch.nn.BatchNorm1d)]
    return linears, norms


def forward(model: StackedMLP, x: torch.Tensor, *, train: bool, block: Callable | None = None,
            step: torch.Tensor | None = None, matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Outputs [M, N] (one per row) or [M, N, K] (K logits) for inputs x [M, N, F]; every model
    in the batch has the same N rows.

    In training mode BatchNorm normalizes with each model's batch statistics (biased
    variance) and updates its running statistics in place (unbiased variance, momentum
    0.1), as BatchNorm1d does; in eval mode it uses the running statistics. Dropout draws
    each model's levels for its training step `step` ([M] int64) from its seed, inside the
    layer's kernel (see engine/dropout.py). `block` is `hidden_block` or a compiled copy of it
    (`compiled_block`); the matmuls (one cuBLAS call each) and the running-statistics update
    stay outside. `matmul_dtype` (bfloat16, or None: the model's own) is what the matmuls
    take and give; weights, BatchNorm and everything else stay in the model's dtype.
    """
    block = block or hidden_block
    n_rows = x.shape[1]
    dropout = train and any(model.rates)
    if dropout and step is None:
        raise ValueError("training with dropout needs each model's step")
    cast = (lambda t: t) if matmul_dtype is None else (lambda t: t.to(matmul_dtype))  # noqa: E731
    h = cast(x)
    for i in range(len(model.gammas)):
        carried = h
        h = torch.bmm(h, cast(model.weights[i]))  # [M, N, H]
        stats = None if train else (model.running_mean[i], model.running_var[i])
        keys = None
        if dropout:  # [M, N, 1] and [1, H] int32: the kernel's per-element hash is then a few int32 ops
            keys = (drop.row_keys(drop.draw_keys(model.seeds, step * model.depths + i), n_rows),
                    drop.unit_keys(h.shape[-1], h.device))
        h, mean, var = block(h, model.biases[i], model.gammas[i], model.betas[i], stats, model.slopes, model.dropout,
                             model.dropout_scale, keys, h.dtype)
        if model.skips[i] is not None:  # models that lack this layer pass their output on unchanged
            h = torch.where(model.skips[i], _to_width(carried, h.shape[-1]), h)
        if train:
            with torch.no_grad():
                model.running_mean[i].lerp_(mean, BN_MOMENTUM)
                model.running_var[i].lerp_(var * (n_rows / (n_rows - 1)), BN_MOMENTUM)
    out = torch.bmm(h, cast(model.weights[-1])).to(model.biases[-1].dtype) + model.biases[-1]  # [M, N, K]
    return out.squeeze(-1) if out.shape[-1] == 1 else out


def hidden_block(h, bias, gamma, beta, stats, slopes, threshold, dropout_scale, keys, out_dtype):
    """Bias, BatchNorm, activation and dropout of one hidden layer: (output [M, N, H] in
    `out_dtype`, the batch's mean and biased variance [M, 1, H], detached; with `stats` given,
    those are used instead). Dropout keeps a unit whose level (from `keys`: its model's draw's
    row keys [M, N, 1] and the unit keys [1, H]) reaches the model's threshold; `keys` None: no
    dropout.

    Each step is one whole-tensor op over [M, N, H]: memory-bound on every device, so the
    number of passes is what costs, and a compiler fuses them into a few (`compiled_block`),
    the dropout hash included: its levels never reach memory."""
    h = h.to(gamma.dtype) + bias
    if stats is None:
        var, mean = torch.var_mean(h, dim=1, keepdim=True, correction=0)  # [M, 1, H]
    else:
        mean, var = stats
    scale = gamma * torch.rsqrt(var + BN_EPS)  # [M, 1, H]
    h = torch.addcmul(beta - mean * scale, h, scale)  # (h - mean) / std * gamma + beta
    h = torch.where(h > 0, h, h * slopes)  # ReLU (slope 0) or LeakyReLU, per model, with their gradients
    if keys is not None:
        h = h * dropout_mask(drop.levels(*keys), threshold, dropout_scale, h.dtype)
    return h.to(out_dtype), mean.detach(), var.detach()


_COMPILED: dict[tuple[str, torch.dtype, str], Callable] = {}


def use_compiler(dev: torch.device) -> bool:
    """torch.compile for the hidden layers: only when asked (TRIALFUSE_COMPILE=1), on a CPU or a
    CUDA device where Triton is installed. It fuses their memory-bound passes (the dropout hash
    included) into a few kernels and equals the eager path (float64: 4e-13 on an H200), but on an
    H200 it has not yet bought time: compiling took 71-79 s, and 100 stacked 3 x 128 models ran
    263 model-epochs/s with the compile's real-shape kernels still inside the timing
    (bench/results/2026-12-04-h200-*.json). On 2 CPU cores it bought nothing."""
    if os.environ.get("TRIALFUSE_COMPILE", "0") != "1":
        return False
    return dev.type != "cuda" or importlib.util.find_spec("triton") is not None


def compiled_block(device: torch.device, dtype: torch.dtype, io_dtype: torch.dtype | None = None) -> Callable:
    """`hidden_block` through torch.compile (shapes dynamic), compiled once per process, device
    type, dtype and the matmuls' dtype `io_dtype` (None: `dtype`): training with and without
    dropout, and evaluation (in `io_dtype` and, for the final scores, in `dtype`). Every depth,
    width and batch size after that reuses these graphs (a batch that starts with one model
    compiles its own the first time one comes); inductor's on-disk cache
    serves the next process on the machine."""
    io_dtype = io_dtype or dtype
    key = (device.type, dtype, io_dtype, torch.get_float32_matmul_precision())  # TF32 or not: graphs of their own
    if key not in _COMPILED:
        import torch._dynamo as dynamo

        limit = "recompile_limit" if hasattr(dynamo.config, "recompile_limit") else "cache_size_limit"  # torch < 2.7
        setattr(dynamo.config, limit, max(getattr(dynamo.config, limit), 32))
        block = torch.compile(hidden_block, dynamic=True)
        _warm_up(block, device, dtype, io_dtype)
        _COMPILED[key] = block
    return _COMPILED[key]


def _warm_up(block: Callable, device: torch.device, dtype: torch.dtype, io: torch.dtype) -> None:
    n_models = 2
    new = partial(_rand, n_models, dtype=dtype, device=device)
    bias, gamma, beta = (new(1, 4).requires_grad_() for _ in range(3))
    slopes, scale = new(1, 1), new(1, 1) + 1
    threshold = torch.randint(0, DROPOUT_LEVELS // 2, (n_models, 1, 1), dtype=torch.int32, device=device)
    keys = (drop.row_keys(torch.arange(n_models, device=device), 3), drop.unit_keys(4, device))
    for drawn in (keys, None):  # training: under autograd, as train_fused_batch runs it
        out, _, _ = block(new(3, 4).to(io).requires_grad_(), bias, gamma, beta, None, slopes, threshold,
                          scale, drawn, io)
        out.float().sum().backward()
    with torch.no_grad():  # evaluation, with the running statistics: epochs in `io`, final scores in `dtype`
        for dtype_in in dict.fromkeys((io, dtype)):
            block(new(3, 4).to(dtype_in), bias, gamma, beta, (new(1, 4), new(1, 4) + 1), slopes, threshold, scale,
                  None, dtype_in)


def _rand(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, dtype=dtype, device=device)


def _to_width(h: torch.Tensor, width: int) -> torch.Tensor:
    """`h` [M, N, H] cut or zero-padded to `width` columns (what is cut is padding for the models
    that carry `h` on: the stack's widths leave room for their units)."""
    if h.shape[-1] >= width:
        return h[..., :width]
    return torch.nn.functional.pad(h, (0, width - h.shape[-1]))
