"""Pixel conventions that data and metrics share, and the one measure of an image both need: its detail.

Metrics take uint8 ``[N, C, H, W]`` (C = 1 or 3), as torch-fidelity does; ``to_uint8`` converts our [-1, 1] floats.
Detail is the energy of the discrete Laplacian of the luma, the classic focus measure (Pech-Pacheco et al. 2000,
"variance of the Laplacian"): an edge blurred over k pixels has a Laplacian about k^2 times weaker, while flat
regions and smooth gradients score near 0. ``ldm_lab.metrics.sharpness`` measures SDXL's size conditioning with
it (SDXL §2.2); the dataset ``shapes_multiscale_scored`` gives it to the lab refiner as its aesthetic score (§2.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")


def to_uint8(images: Tensor) -> Tensor:
    """Float images in [-1, 1] (any shape) -> uint8 in [0, 255], rounded and clipped."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def check_uint8(images: Tensor) -> Tensor:
    """``images`` if it is uint8 ``[N, 1 or 3, H, W]``; else an error that says how to convert."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"metrics take uint8 images [N, 1 or 3, H, W], got {images.dtype} {list(images.shape)}; "
                         "convert float images in [-1, 1] with ldm_lab.metrics.to_uint8")
    return images


# The 3x3 discrete Laplacian: the sum of second differences along rows and columns.
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def channel_laplacian_energy(values: Tensor) -> Tensor:
    """Mean squared Laplacian of each channel, averaged, per item: float ``[N, C, H, W]`` -> ``[N]``. The border
    row and column, where the kernel would reach outside, are left out."""
    n, c, h, w = values.shape
    response = F.conv2d(values.float().reshape(n * c, 1, h, w), LAPLACIAN.to(values.device).view(1, 1, 3, 3))
    return response.square().reshape(n, -1).mean(dim=1)                 # response: [N C, 1, H-2, W-2]


def laplacian_energy(images: Tensor) -> Tensor:
    """Mean squared Laplacian of the luma (pixels in [0, 1]), per image: uint8 ``[N, C, H, W]`` -> ``[N]``."""
    pixels = check_uint8(images).float() / 255
    if pixels.shape[1] == 3:
        pixels = torch.einsum("nchw,c->nhw", pixels, pixels.new_tensor(LUMA_WEIGHTS)).unsqueeze(1)
    return channel_laplacian_energy(pixels)


# The lab refiner's stand-in for SDXL's aesthetic score (§2.5 conditions the refiner on a LAION-aesthetics score;
# no such predictor exists here): a score of measurable detail, 5 + log2(Laplacian energy / 5e-4), clipped to
# [0, 10]. On shapes_multiscale the median small original (shorter side < 24 px, upscaled, blurred) scores about 2.7
# and the median large one (>= 64 px) about 5.7, so SDXL's sampling values 6.0 and, for the unconditional branch,
# 2.5 ask for a sharp and a blurred image as they do in SDXL.
DETAIL_REFERENCE = 5e-4   # the Laplacian energy that scores 5


def detail_score(images: Tensor) -> Tensor:
    """uint8 ``[N, C, H, W]`` -> ``[N]`` detail scores in [0, 10]: one point per doubling of Laplacian energy."""
    energy = laplacian_energy(images).clamp(min=1e-12)
    return (5 + torch.log2(energy / DETAIL_REFERENCE)).clamp(0, 10)
