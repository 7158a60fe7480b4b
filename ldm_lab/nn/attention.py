"""The spatial transformer of LDM (Rombach et al. 2022, §3.3): attention over the pixels of a feature map,
with cross-attention to the conditioning tokens (the text), so that

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V,  Q = W_Q phi(z_t),  K = W_K tau(y),  V = W_V tau(y).

Attention itself is ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels
where the device has them).
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ldm_lab.nn.resnet import group_norm


class Attention(nn.Module):
    """Multi-head attention from ``query_dim`` tokens to ``context_dim`` tokens (self-attention if None).

    The inner width is ``num_heads * head_dim``; q, k, v have no bias, the output projection has one.
    """

    def __init__(self, query_dim: int, num_heads: int, head_dim: int, context_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        inner_dim = num_heads * head_dim
        self.num_heads = num_heads
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner_dim, bias=False)
        self.to_out = nn.Linear(inner_dim, query_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x: (b, n, query_dim), context: (b, m, context_dim) or None -> (b, n, query_dim)."""
        context = x if context is None else context
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.num_heads)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1 / sqrt(head_dim)
        return self.dropout(self.to_out(rearrange(out, "b h n d -> b n (h d)")))


class GEGLU(nn.Module):
    """Gated GELU (Shazeer 2020): one Linear to 2 x ``inner_dim``, half of it gating the other: a * GELU(g)."""

    def __init__(self, dim: int, inner_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(..., dim) -> (..., inner_dim)."""
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU to ``mult`` x the width, dropout, Linear back."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.geglu = GEGLU(dim, mult * dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(mult * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(..., dim) -> (..., dim)."""
        return self.out(self.dropout(self.geglu(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, cross-attention to the context, feed-forward, each with a residual.

    ``context_dim=None`` leaves out the cross-attention (an unconditional or class-conditional model).
    LayerNorms use eps 1e-5.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, context_dim: int | None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads, head_dim, dropout=dropout)
        self.norm_cross = nn.LayerNorm(dim) if context_dim is not None else None
        self.cross_attn = Attention(dim, num_heads, head_dim, context_dim, dropout) if context_dim else None
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, dropout=dropout)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x: (b, n, dim), context: (b, m, context_dim) -> (b, n, dim)."""
        x = x + self.self_attn(self.norm_self(x))
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.norm_cross(x), context)
        return x + self.ff(self.norm_ff(x))


def _token_projection(channels: int, linear: bool) -> nn.Module:
    """A channels -> channels map: a Linear on tokens, or the same map stored as a 1x1 conv (SD1 checkpoints)."""
    return nn.Linear(channels, channels) if linear else nn.Conv2d(channels, channels, 1)


def _on_tokens(projection: nn.Module, tokens: Tensor) -> Tensor:
    """Apply a Linear or a 1x1 conv to tokens (b, n, c): for the conv, its (out, in, 1, 1) kernel is a matrix."""
    return F.linear(tokens, projection.weight.flatten(1), projection.bias)


class SpatialTransformer(nn.Module):
    """Feature map -> tokens -> ``depth`` transformer blocks -> feature map, plus the input (LDM §3.3).

    GroupNorm (eps 1e-6), then a projection to tokens that is a 1x1 conv (SD1) or a Linear on the
    flattened tokens (SD2, SDXL: ``use_linear_projection``); the two are the same map, stored differently.
    """

    def __init__(self, channels: int, num_heads: int, head_dim: int, depth: int = 1,
                 context_dim: int | None = None, use_linear_projection: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if num_heads * head_dim != channels:
            raise ValueError(f"a spatial transformer on {channels} channels needs num_heads * head_dim == "
                             f"{channels}, got {num_heads} x {head_dim}; change num_heads or head_dim.")
        self.norm = group_norm(channels, eps=1e-6)
        self.proj_in = _token_projection(channels, use_linear_projection)
        self.blocks = nn.ModuleList(
            TransformerBlock(channels, num_heads, head_dim, context_dim, dropout) for _ in range(depth))
        self.proj_out = _token_projection(channels, use_linear_projection)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x: (b, c, h, w), context: (b, m, context_dim) -> (b, c, h, w)."""
        height, width = x.shape[-2:]
        tokens = _on_tokens(self.proj_in, rearrange(self.norm(x), "b c h w -> b (h w) c"))
        for block in self.blocks:
            tokens = block(tokens, context)
        tokens = _on_tokens(self.proj_out, tokens)
        return x + rearrange(tokens, "b (h w) c -> b c h w", h=height, w=width)


__all__ = ["Attention", "GEGLU", "FeedForward", "TransformerBlock", "SpatialTransformer"]
