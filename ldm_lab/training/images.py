"""Sample grids as PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image


def image_grid(images: torch.Tensor, columns: int, padding: int = 2) -> torch.Tensor:
    """Tile ``[N, C, H, W]`` images (C = 1 or 3) into one ``[3, H', W']`` image, white between tiles."""
    n, channels, _, _ = images.shape
    if channels not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels, got {channels} (images shaped {tuple(images.shape)}).")
    rows = math.ceil(n / columns)
    tiles = F.pad(images.expand(-1, 3, -1, -1), (padding, 0, padding, 0), value=1.0)  # a border above/left
    blanks = torch.ones(rows * columns - n, *tiles.shape[1:], dtype=tiles.dtype)
    grid = rearrange(torch.cat([tiles, blanks]), "(r c) ch h w -> ch (r h) (c w)", r=rows, c=columns)
    return F.pad(grid, (0, padding, 0, padding), value=1.0)  # and the last border below/right


def save_image_grid(images: torch.Tensor, path: str | Path, columns: int | None = None) -> Path:
    """Save ``images`` ``[N, C, H, W]`` in ``[-1, 1]`` as one PNG grid, about square by default."""
    if images.dim() != 4:
        raise ValueError(f"expected images shaped [N, C, H, W], got {tuple(images.shape)}.")
    columns = columns or math.ceil(math.sqrt(images.shape[0]))
    grid = image_grid(images.detach().float().cpu().clamp(-1, 1), columns)
    pixels = ((grid + 1) * 127.5).round().to(torch.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rearrange(pixels, "c h w -> h w c").numpy()).save(path)
    return path
