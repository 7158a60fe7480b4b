"""Controlled corruptions of uint8 images ``[N, C, H, W]``: a metric worth trusting must grow with their strength
(the sanity check of Heusel et al. 2017, Fig. 1, which adds noise, blur, swirl, ... and watches FID rise)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ldm_lab.metrics.images import check_uint8


def add_noise(images: Tensor, sigma: float, seed: int = 0) -> Tensor:
    """Add Gaussian noise of standard deviation ``sigma`` (in 0..255 units), rounded and clipped."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(check_uint8(images).shape, generator=generator) * sigma
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


def blur(images: Tensor, sigma: float) -> Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (reflect padding); ``sigma = 0`` returns a copy."""
    if sigma == 0:
        return check_uint8(images).clone()
    radius = max(1, round(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    line = torch.exp(-offsets**2 / (2 * sigma**2))
    line = line / line.sum()
    channels = check_uint8(images).shape[1]
    padded = F.pad(images.float(), (radius,) * 4, mode="reflect")
    rows = F.conv2d(padded, line.view(1, 1, -1, 1).expand(channels, 1, -1, -1), groups=channels)
    both = F.conv2d(rows, line.view(1, 1, 1, -1).expand(channels, 1, -1, -1), groups=channels)
    return both.round().clamp(0, 255).to(torch.uint8)
