"""Exponential moving average of the weights (LDM/SGM's ``LitEma``; Polyak averaging)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of a model whose parameters track ``ema <- d * ema + (1 - d) * w``.

    ``d`` warms up as in LDM's ``LitEma``: ``d = min(decay, (1 + n) / (10 + n))`` with ``n`` counting this update
    (LitEma increments its counter before computing d, so the first update uses 2/11), so a young
    average is not dominated by the random initialisation (with decay 0.999 a plain average would still be 37%
    initial weights after 1,000 steps). Buffers (e.g. norm statistics) are copied, not averaged. ``ema.model`` is
    an ordinary module: sample with it, or save it with the rest of the checkpoint (``ema.safetensors``).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, num_updates: int) -> float:
        """The decay of the update that follows ``num_updates`` earlier ones: LitEma's count n = num_updates + 1,
        so d = min(decay, (2 + num_updates) / (11 + num_updates)); the first is 2/11."""
        n = num_updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module, num_updates: int) -> None:
        """One averaging step towards ``model``'s current weights; ``num_updates`` is how many came before
        (the trainer's step, so a resumed run continues the same warm-up)."""
        weight = 1.0 - self.decay_at(num_updates)
        for ema_param, param in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_param.lerp_(param.detach().to(ema_param.dtype), weight)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_buffer.copy_(buffer)
