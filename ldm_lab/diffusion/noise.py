"""Drawing Gaussian noise reproducibly on any device."""

from __future__ import annotations

import torch
from torch import Tensor


def standard_normal(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise shaped like ``like``, drawn on the generator's device and moved to ``like``'s
    (so a CPU generator gives the same numbers on every device, as diffusers' ``randn_tensor``)."""
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)
