"""Adam and AdamW over stacked parameters: one whole-tensor update for M models at once.

An (init, update) pair; `update` steps the parameters and moments in place (they are the
tensors the stacked model computes with) and returns the state with the new step counts.
Every parameter tensor has the model dimension first ([M, ...]); every hyperparameter
is a [M] tensor, so a batch mixes learning rates, weight decays, Adam and AdamW freely,
with no Python loop over models. The arithmetic follows torch.optim.Adam / AdamW
(foreach=False) operation by operation, so a model updated here matches the same model
updated by torch alone.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


class AdamState(NamedTuple):
    step: torch.Tensor  # [M] steps taken by each model
    exp_avg: list[torch.Tensor]  # per parameter, same shape as it
    exp_avg_sq: list[torch.Tensor]


class AdamHyper(NamedTuple):
    lr: torch.Tensor  # [M]
    weight_decay: torch.Tensor  # [M]
    decoupled: torch.Tensor  # [M] bool: AdamW (decay the weights) rather than Adam (L2 in the gradient)


def init(params: list[torch.Tensor]) -> AdamState:
    step = torch.zeros(params[0].shape[0], dtype=params[0].dtype, device=params[0].device)
    return AdamState(step, [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params])


def _per_model(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[M] -> [M, 1, ..., 1] to broadcast against a stacked parameter."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


@torch.no_grad()
def update(params: list[torch.Tensor], grads: list[torch.Tensor], state: AdamState, hyper: AdamHyper,
           active: torch.Tensor) -> AdamState:
    """Step every active model in place; models with active=False keep params and moments."""
    step = state.step + active.to(state.step.dtype)
    bias1 = 1 - BETA1 ** step  # [M]
    bias2_sqrt = torch.sqrt(1 - BETA2 ** step)
    for p, g, m, v in zip(params, grads, state.exp_avg, state.exp_avg_sq, strict=True):
        on = _per_model(active, p)
        lr, wd = _per_model(hyper.lr, p), _per_model(hyper.weight_decay, p)
        decoupled = _per_model(hyper.decoupled, p)
        g = torch.where(decoupled, g, g + wd * p)  # Adam: L2 term joins the gradient
        p_decayed = torch.where(decoupled, p * (1 - lr * wd), p)  # AdamW: decay the weights first
        m_new = torch.lerp(m, g, 1 - BETA1)
        v_new = v * BETA2 + (1 - BETA2) * g * g
        denom = torch.sqrt(v_new) / _per_model(bias2_sqrt, p) + EPS
        step_size = lr / _per_model(bias1, p)
        p_new = p_decayed - step_size * (m_new / denom)
        p.copy_(torch.where(on, p_new, p))
        m.copy_(torch.where(on, m_new, m))
        v.copy_(torch.where(on, v_new, v))
    return AdamState(step, state.exp_avg, state.exp_avg_sq)
