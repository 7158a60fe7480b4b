"""Cross-attention maps: where each conditioning token attends in the image (LDM §3.3's
softmax(Q K^T / sqrt(d)) with Q from the feature map and K from tau_theta(y)), recorded for one forward pass.

    with record_cross_attention(model.unet) as maps:
        model(x_t, t, **cond)
    maps[0].per_token()             # (b, tokens, h, w) of one layer, averaged over heads
    token_maps(maps, size=(64, 64))  # (b, tokens, 64, 64): all layers, resized and averaged

The U-Net computes attention with fused SDPA kernels that never materialise the probabilities; the recorder
recomputes them from the layer's own projections of the same inputs, so nothing in the model changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ldm_lab.nn.attention import Attention, SpatialTransformer


@dataclass(frozen=True)
class CrossAttentionMap:
    """The attention probabilities of one cross-attention layer."""

    layer: str              # the layer's module path, e.g. "down.1.blocks.0.attn.blocks.0.cross_attn"
    probs: Tensor           # (b, heads, h * w, tokens): each pixel's distribution over the tokens
    size: tuple[int, int]   # (h, w) of the feature map the layer works on

    def per_token(self) -> Tensor:
        """(b, tokens, h, w): the probability mass each token receives at each pixel, averaged over heads."""
        return rearrange(self.probs.mean(dim=1), "b (h w) m -> b m h w", h=self.size[0], w=self.size[1])


def token_maps(maps: list[CrossAttentionMap], size: tuple[int, int]) -> Tensor:
    """(b, tokens, h, w): every layer's per-token map, resized to ``size`` and averaged over layers (the
    "prompt-to-prompt" view of which pixels each token drives)."""
    resized = [F.interpolate(m.per_token(), size=size, mode="bilinear", align_corners=False) for m in maps]
    return torch.stack(resized).mean(dim=0)


def attention_probs(attention: Attention, x: Tensor, context: Tensor) -> Tensor:
    """softmax(Q K^T / sqrt(head_dim)) of ``attention`` for queries x (b, n, dim), keys from context (b, m, c)."""
    q, k = (rearrange(t, "b n (h d) -> b h n d", h=attention.num_heads)
            for t in (attention.to_q(x), attention.to_k(context)))
    return (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(dim=-1)


@contextmanager
def record_cross_attention(module: nn.Module) -> Iterator[list[CrossAttentionMap]]:
    """Record every cross-attention layer inside ``module`` (a U-Net or a whole model) while the block runs;
    yields the list the maps are appended to, in the order the layers run."""
    maps: list[CrossAttentionMap] = []
    size: list[tuple[int, int]] = [(0, 0)]  # the feature-map size of the spatial transformer now running

    def remember_size(transformer: nn.Module, inputs: tuple) -> None:
        size[0] = tuple(inputs[0].shape[-2:])

    def record(name: str):
        def hook(attention: Attention, inputs: tuple, output: Tensor) -> None:
            x, context = inputs
            with torch.no_grad():
                maps.append(CrossAttentionMap(name, attention_probs(attention, x, context).cpu(), size[0]))
        return hook

    layers = [(name, m) for name, m in module.named_modules()
              if isinstance(m, Attention) and name.endswith("cross_attn")]
    if not layers:
        raise ValueError("this model has no cross-attention layers (its U-Net has context_dim=None): there is no "
                         "map of tokens to record. Use a model conditioned through cross-attention.")
    handles = [m.register_forward_pre_hook(remember_size)
               for m in module.modules() if isinstance(m, SpatialTransformer)]
    handles += [m.register_forward_hook(record(name)) for name, m in layers]
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()
