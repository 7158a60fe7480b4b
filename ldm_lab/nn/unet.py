"""The denoising U-Net of LDM and Stable Diffusion (Rombach et al. 2022, §3.3; Podell et al. 2023, §2.1).

Layout, as in LDM's ``openaimodel.UNetModel``::

    conv_in -> down levels (ResBlocks [+ SpatialTransformer], then a stride-2 conv) -> middle
            -> up levels (ResBlocks on [h, skip] [+ SpatialTransformer], then 2x upsampling) -> norm, SiLU, conv_out

Every output of the way down (the stem, each block, each downsample) is a skip that one block on the way up
concatenates, so each up level has ``num_res_blocks + 1`` blocks. The timestep embedding (plus the class or
vector condition) enters every ResBlock; the context tokens enter every cross-attention.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ldm_lab.nn.attention import SpatialTransformer
from ldm_lab.nn.embeddings import EmbeddingMLP, timestep_embedding
from ldm_lab.nn.resnet import Downsample, ResBlock, Upsample, group_norm


@dataclass(frozen=True)
class UNetConfig:
    """Denoising U-Net (LDM §3.3). Defaults are Stable Diffusion 1.5's (859,520,964 parameters)."""

    in_channels: int = 4               # channels of x_t plus any concatenated condition (SD inpainting: 4 + 1 + 4)
    out_channels: int = 4              # channels of the prediction (eps, v or x0)
    model_channels: int = 320          # width of the first level; level i has model_channels * channel_mult[i]
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)       # one entry per level; each level after the first halves h, w
    num_res_blocks: int = 2            # ResBlocks per level on the way down (the way up has one more)
    transformer_depth: tuple[int, ...] = (1, 1, 1, 0)  # transformer blocks after each ResBlock of a level (0: none)
    transformer_depth_middle: int = 1  # transformer blocks between the two middle ResBlocks (0: none)
    num_heads: int | None = 8          # SD1 fixes the head count at every level ...
    head_dim: int | None = None        # ... SD2 / SDXL fix the head width (64); give exactly one
    context_dim: int | None = 768      # width of the cross-attention tokens (None: no cross-attention)
    use_linear_projection: bool = False  # token projections as Linear (SD2, SDXL) instead of 1x1 conv (SD1)
    num_classes: int | None = None     # class-conditional: a learned embedding per label, added to the time embedding
    y_dim: int | None = None           # width of a vector condition (SDXL base 2816), lifted by an MLP and added
    y_description: str = ""            # what the vector is made of, quoted by width errors
    context_description: str = ""      # what the context tokens are, quoted by width errors
    dropout: float = 0.0               # dropout inside ResBlocks and transformer blocks

    def __post_init__(self) -> None:
        for name in ("channel_mult", "transformer_depth"):  # accept lists (e.g. from JSON), store tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.transformer_depth) != len(self.channel_mult):
            raise ValueError(f"transformer_depth {self.transformer_depth} needs one entry per level of "
                             f"channel_mult {self.channel_mult} (use 0 for a level without attention)")
        if (self.num_heads is None) == (self.head_dim is None):
            raise ValueError(f"give exactly one of num_heads (SD1: 8) or head_dim (SD2/SDXL: 64), "
                             f"got num_heads={self.num_heads}, head_dim={self.head_dim}")
        if self.num_classes is not None and self.y_dim is not None:
            raise ValueError("give num_classes (class labels) or y_dim (a vector condition), not both")
        depths = (*self.transformer_depth, self.transformer_depth_middle)
        widths = (*self.level_widths, self.level_widths[-1])
        for width, depth in zip(widths, depths):
            if depth:
                self.heads(width)  # raises if the width does not split into heads

    @property
    def level_widths(self) -> tuple[int, ...]:
        """Channels of each level: model_channels * channel_mult[i]."""
        return tuple(self.model_channels * m for m in self.channel_mult)

    @property
    def time_embed_dim(self) -> int:
        """Width of the timestep embedding (and of everything added to it): 4 x model_channels."""
        return 4 * self.model_channels

    def heads(self, channels: int) -> tuple[int, int]:
        """(num_heads, head_dim) of the attention at a level of ``channels`` width."""
        if self.num_heads is not None:
            num_heads, head_dim = self.num_heads, channels // self.num_heads
        else:
            num_heads, head_dim = channels // self.head_dim, self.head_dim
        if num_heads * head_dim != channels:
            given = f"num_heads={self.num_heads}" if self.num_heads is not None else f"head_dim={self.head_dim}"
            raise ValueError(f"a level of {channels} channels does not split into heads with {given}; "
                             "choose a value that divides every attention level's width")
        return num_heads, head_dim

    def replace(self, **changes) -> UNetConfig:
        """A copy with some fields changed (dataclasses.replace, spelled as a method)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"UNetConfig has no field(s) {unknown}; fields are {sorted(known)}")
        return type(self)(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


class ResAttn(nn.Module):
    """One step of a level: a ResBlock, then (at levels with attention) a SpatialTransformer."""

    def __init__(self, res: ResBlock, attn: SpatialTransformer | None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn

    def forward(self, h: Tensor, emb: Tensor, context: Tensor | None) -> Tensor:
        h = self.res(h, emb)
        return h if self.attn is None else self.attn(h, context)


class DownLevel(nn.Module):
    """``num_res_blocks`` steps at one resolution, then a stride-2 conv (except at the deepest level)."""

    def __init__(self, blocks: list[ResAttn], downsample: Downsample | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, h: Tensor, emb: Tensor, context: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        """Returns the output and the skips it leaves for the way up (one per block and per downsample)."""
        skips = []
        for block in self.blocks:
            h = block(h, emb, context)
            skips.append(h)
        if self.downsample is not None:
            h = self.downsample(h)
            skips.append(h)
        return h, skips


class MiddleBlock(nn.Module):
    """ResBlock, SpatialTransformer (if any), ResBlock at the lowest resolution."""

    def __init__(self, res_in: ResBlock, attn: SpatialTransformer | None, res_out: ResBlock) -> None:
        super().__init__()
        self.res_in = res_in
        self.attn = attn
        self.res_out = res_out

    def forward(self, h: Tensor, emb: Tensor, context: Tensor | None) -> Tensor:
        h = self.res_in(h, emb)
        if self.attn is not None:
            h = self.attn(h, context)
        return self.res_out(h, emb)


class UpLevel(nn.Module):
    """``num_res_blocks + 1`` steps, each on [h, skip] concatenated, then 2x upsampling (except at level 0)."""

    def __init__(self, blocks: list[ResAttn], upsample: Upsample | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.upsample = upsample

    def forward(self, h: Tensor, skips: list[Tensor], emb: Tensor, context: Tensor | None) -> Tensor:
        """Consumes skips from the end of ``skips`` (the deepest first)."""
        for block in self.blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        if self.upsample is not None:
            h = self.upsample(h, size=skips[-1].shape[-2:])  # the next skip's size, so odd sizes work
        return h


class UNet(nn.Module):
    """eps / v / x0 prediction network: ``forward(x_t, t, context, y) -> prediction`` (LDM eq. 2 and 3).

    ``down[i]`` is level i; ``up[j]`` is level ``len(channel_mult) - 1 - j`` (the order data flows).
    As in the original, every residual branch's last layer starts at zero, so a fresh U-Net outputs zeros.
    """

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        c, widths = config, config.level_widths
        self.time_embed = EmbeddingMLP(c.model_channels, c.time_embed_dim)
        self.class_embed = nn.Embedding(c.num_classes, c.time_embed_dim) if c.num_classes else None
        self.vector_embed = EmbeddingMLP(c.y_dim, c.time_embed_dim) if c.y_dim else None
        self.conv_in = nn.Conv2d(c.in_channels, c.model_channels, 3, padding=1)

        skip_widths, ch = [c.model_channels], c.model_channels  # widths of the skips, in the order they are made
        self.down = nn.ModuleList()
        for level, width in enumerate(widths):
            blocks = []
            for _ in range(c.num_res_blocks):
                blocks.append(self._step(ch, width, c.transformer_depth[level]))
                ch = width
                skip_widths.append(ch)
            deepest = level == len(widths) - 1
            self.down.append(DownLevel(blocks, None if deepest else Downsample(ch)))
            if not deepest:
                skip_widths.append(ch)  # the downsample's output is a skip too

        self.middle = MiddleBlock(self._res(ch, ch), self._attn(ch, c.transformer_depth_middle), self._res(ch, ch))

        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            blocks = []
            for _ in range(c.num_res_blocks + 1):
                blocks.append(self._step(ch + skip_widths.pop(), widths[level], c.transformer_depth[level]))
                ch = widths[level]
            self.up.append(UpLevel(blocks, Upsample(ch) if level > 0 else None))

        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, c.out_channels, 3, padding=1)
        self._zero_init_branch_outputs()

    def _res(self, in_channels: int, out_channels: int) -> ResBlock:
        return ResBlock(in_channels, out_channels, self.config.time_embed_dim, self.config.dropout)

    def _attn(self, channels: int, depth: int) -> SpatialTransformer | None:
        if depth == 0:
            return None
        num_heads, head_dim = self.config.heads(channels)
        return SpatialTransformer(channels, num_heads, head_dim, depth, self.config.context_dim,
                                  self.config.use_linear_projection, self.config.dropout)

    def _step(self, in_channels: int, out_channels: int, depth: int) -> ResAttn:
        return ResAttn(self._res(in_channels, out_channels), self._attn(out_channels, depth))

    @torch.no_grad()
    def _zero_init_branch_outputs(self) -> None:
        """LDM's ``zero_module``: ResBlocks' second conv, transformers' proj_out and conv_out start at zero."""
        for module in self.modules():
            last = {ResBlock: "conv2", SpatialTransformer: "proj_out"}.get(type(module))
            if last is not None:
                getattr(module, last).weight.zero_()
                getattr(module, last).bias.zero_()
        self.conv_out.weight.zero_()
        self.conv_out.bias.zero_()

    def forward(self, x: Tensor, timesteps: Tensor | float, context: Tensor | None = None,
                y: Tensor | None = None, concat: Tensor | None = None) -> Tensor:
        """x: (b, c, h, w) noisy latents; timesteps: (b,) or a scalar; context: (b, m, context_dim) tokens;
        y: (b,) class labels or (b, y_dim) vector; concat: (b, k, h, w) appended to x's channels
        (the inpainting mask and masked image). Returns (b, out_channels, h, w)."""
        if concat is not None:
            x = torch.cat([x, concat], dim=1)
        self._check_inputs(x, context)
        h = self.conv_in(x)
        emb = self._embedding(timesteps, y, batch=x.shape[0], device=x.device)
        skips = [h]
        for level in self.down:
            h, level_skips = level(h, emb, context)
            skips += level_skips
        h = self.middle(h, emb, context)
        for level in self.up:
            h = level(h, skips, emb, context)
        return self.conv_out(F.silu(self.norm_out(h)))

    def _embedding(self, timesteps: Tensor | float, y: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """Time embedding plus the class / vector condition: (b, time_embed_dim)."""
        t = torch.as_tensor(timesteps, device=device)
        t = t.expand(batch) if t.ndim == 0 else t
        dtype = self.time_embed.linear_1.weight.dtype
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels).to(dtype))
        return emb + self._condition_embedding(y, batch)

    def _condition_embedding(self, y: Tensor | None, batch: int) -> Tensor | float:
        c = self.config
        if self.class_embed is None and self.vector_embed is None:
            if y is not None:
                raise ValueError("this U-Net takes no class or vector condition y; build it with num_classes "
                                 "(labels) or y_dim (a vector) to use one")
            return 0.0
        if y is None:
            wanted = f"(b,) class labels < {c.num_classes}" if self.class_embed is not None else f"(b, {c.y_dim})"
            raise ValueError(f"this U-Net is conditioned on y: pass y of shape {wanted}")
        if y.shape[0] != batch:
            raise ValueError(f"y has batch size {y.shape[0]}, but x has {batch}")
        if self.class_embed is not None:
            return self.class_embed(y)
        if y.shape[-1] != c.y_dim:
            made_of = f" ({c.y_description})" if c.y_description else ""
            raise ValueError(f"vector condition has width {y.shape[-1]}, but this U-Net expects {c.y_dim}{made_of}. "
                             "Check which embedders the conditioner was built with.")
        return self.vector_embed(y.to(self.vector_embed.linear_1.weight.dtype))

    def _check_inputs(self, x: Tensor, context: Tensor | None) -> None:
        c = self.config
        if x.shape[1] != c.in_channels:
            raise ValueError(f"input has {x.shape[1]} channels, but this U-Net takes {c.in_channels} "
                             "(the latent plus any concat conditioning); pass the missing channels as concat=, "
                             "or build the U-Net with in_channels matching your input")
        if c.context_dim is None:
            if context is not None:
                raise ValueError("this U-Net has no cross-attention (context_dim=None), but a context was passed")
            return
        if context is None:
            raise ValueError(f"this U-Net cross-attends to context tokens of width {c.context_dim}; "
                             "pass context of shape (b, tokens, width)")
        if context.shape[-1] != c.context_dim:
            made_of = f" ({c.context_description})" if c.context_description else ""
            raise ValueError(f"context has width {context.shape[-1]}, but this U-Net expects {c.context_dim}"
                             f"{made_of}. Check which text encoder produced it.")


__all__ = ["UNetConfig", "UNet", "ResAttn", "DownLevel", "MiddleBlock", "UpLevel"]
