"""Image conventions at the metric boundary: metrics take uint8 ``[N, C, H, W]`` (C = 1 or 3), as torch-fidelity
does, so a metric never depends on how a model scales its pixels. ``to_uint8`` converts our [-1, 1] floats
(``ldm_lab.pixels``: the conventions, shared with the data)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ldm_lab.pixels import LUMA_WEIGHTS, check_uint8, to_uint8


def to_rgb(images: Tensor) -> Tensor:
    """uint8 ``[N, 1 or 3, H, W]`` -> ``[N, 3, H, W]`` (grey repeated), for extractors that take only RGB."""
    return check_uint8(images).expand(-1, 3, -1, -1)


def to_unit_range(images: Tensor, channels: int, size: int) -> Tensor:
    """uint8 ``[N, C, H, W]`` -> float ``[N, channels, size, size]`` in [-1, 1]: grey <-> RGB by luma or
    repetition, then an antialiased bilinear resize."""
    pixels = check_uint8(images).float() / 127.5 - 1
    if pixels.shape[1] == 3 and channels == 1:
        pixels = torch.einsum("nchw,c->nhw", pixels, pixels.new_tensor(LUMA_WEIGHTS)).unsqueeze(1)
    elif pixels.shape[1] == 1 and channels == 3:
        pixels = pixels.expand(-1, 3, -1, -1)
    if pixels.shape[-2:] != (size, size):
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return pixels


class UInt8Images(Dataset):
    """A uint8 tensor ``[N, C, H, W]`` as the Dataset torch-fidelity's ``calculate_metrics`` reads."""

    def __init__(self, images: Tensor):
        self.images = check_uint8(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index]


__all__ = ["LUMA_WEIGHTS", "UInt8Images", "check_uint8", "to_rgb", "to_uint8", "to_unit_range"]
