"""Embeddings of scalars: sinusoidal timestep features, SDXL's Fourier micro-conditioning, and the
two-layer MLP that lifts them to the U-Net's embedding width."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal features of (possibly fractional) timesteps, (b,) -> (b, dim).

    The Transformer's position encoding (Vaswani et al. 2017, §3.5) as used by DDPM and LDM's
    ``openaimodel.timestep_embedding``: frequencies f_i = max_period^(-i / (dim/2)), features
    [cos(t f), sin(t f)] (cosines first). Odd ``dim`` gets one zero feature at the end.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]  # (b, half)
    features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        features = torch.nn.functional.pad(features, (0, 1))
    return features


def fourier_features(values: Tensor, dim: int = 256) -> Tensor:
    """Embed each scalar of a vector separately and concatenate, (b, n) -> (b, n * dim).

    SDXL's micro-conditioning (Podell et al. 2023, §2.2): original size (h, w), crop (top, left) and
    target size (h, w) are six scalars, each embedded with :func:`timestep_embedding` to 256 features
    (SGM's ``ConcatTimestepEmbedderND``), giving 6 x 256 = 1536 features.
    """
    b, n = values.shape
    flat = timestep_embedding(values.reshape(b * n), dim)  # (b n, dim)
    return rearrange(flat, "(b n) d -> b (n d)", b=b, n=n)


class EmbeddingMLP(nn.Module):
    """Linear -> SiLU -> Linear: LDM's ``time_embed`` and SDXL's ``label_emb`` for the vector condition."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(b, in_dim) -> (b, out_dim)."""
        return self.linear_2(nn.functional.silu(self.linear_1(x)))


__all__ = ["timestep_embedding", "fourier_features", "EmbeddingMLP"]
