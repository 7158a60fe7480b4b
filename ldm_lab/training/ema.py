"""Exponential moving average of the weights (LDM/SGM's ``LitEma``; Polyak averaging)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of a model whose parameters track ``ema <- decay * ema + (1 - decay) * w``.

    Buffers (e.g. norm statistics) are copied, not averaged. ``ema.model`` is an ordinary module: sample with it,
    or save it with the rest of the checkpoint (``ema.safetensors``).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step towards ``model``'s current weights."""
        for ema_param, param in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_param.lerp_(param.detach().to(ema_param.dtype), 1.0 - self.decay)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_buffer.copy_(buffer)
