"""Residual blocks and 2x resampling, shared by the U-Net and the autoencoders.

The block is the one of DDPM (Ho et al. 2020, App. B) as used by LDM's ``openaimodel.ResBlock`` and its
autoencoder's ``ResnetBlock``: two GroupNorm-SiLU-conv stages, a timestep embedding added in between,
and a skip path that is the identity, or a 1x1 (or 3x3) conv when the width changes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

GROUPS = 32  # GroupNorm groups everywhere in the LDM family


def group_norm(channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm with LDM's 32 groups; says what to change when ``channels`` does not divide."""
    if channels % GROUPS:
        raise ValueError(f"GroupNorm({GROUPS}) needs a channel count divisible by {GROUPS}, got {channels}; "
                         f"choose model widths that are multiples of {GROUPS}.")
    return nn.GroupNorm(GROUPS, channels, eps=eps)


class ResBlock(nn.Module):
    """x -> norm-SiLU-conv -> (+ Linear(SiLU(emb))) -> norm-SiLU-dropout-conv, plus a skip path.

    ``emb_dim=None`` drops the embedding injection (the autoencoders). ``skip_kernel_size`` picks the
    skip conv used when ``in_channels != out_channels``: 1 (LDM's ``nin_shortcut``) or 3 (``conv_shortcut``).
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int | None, dropout: float = 0.0,
                 eps: float = 1e-5, skip_kernel_size: int = 1) -> None:
        super().__init__()
        if skip_kernel_size not in (1, 3):
            raise ValueError(f"skip_kernel_size must be 1 or 3, got {skip_kernel_size}")
        self.norm1 = group_norm(in_channels, eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_channels) if emb_dim is not None else None
        self.norm2 = group_norm(out_channels, eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (nn.Identity() if in_channels == out_channels else
                     nn.Conv2d(in_channels, out_channels, skip_kernel_size, padding=skip_kernel_size // 2))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        """x: (b, in_channels, h, w); emb: (b, emb_dim) or None -> (b, out_channels, h, w)."""
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb_proj is not None:
            if emb is None:
                raise ValueError("this ResBlock was built with emb_dim set, so it needs an embedding; "
                                 "pass emb, or build it with emb_dim=None")
            h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve height and width with a stride-2 3x3 conv.

    ``asymmetric_padding=True`` pads only right and bottom by one (LDM's autoencoder); otherwise one
    pixel on every side (the U-Net). Both give (h / 2, w / 2) for even sizes.
    """

    def __init__(self, channels: int, out_channels: int | None = None, asymmetric_padding: bool = False) -> None:
        super().__init__()
        self.asymmetric_padding = asymmetric_padding
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, stride=2,
                              padding=0 if asymmetric_padding else 1)

    def forward(self, x: Tensor) -> Tensor:
        """(b, c, h, w) -> (b, out_channels, h / 2, w / 2)."""
        if self.asymmetric_padding:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Double height and width: nearest-neighbour interpolation, then a 3x3 conv."""

    def __init__(self, channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """(b, c, h, w) -> (b, out_channels, 2h, 2w), or to ``size`` (height, width) when given, which
        restores odd sizes that a Downsample rounded up."""
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


__all__ = ["GROUPS", "group_norm", "ResBlock", "Downsample", "Upsample"]
