"""The first stage of latent diffusion: a convolutional autoencoder that compresses images by a factor f
(LDM §3.1, App. G; the encoder/decoder of VQGAN, Esser et al. 2021).

Level i of the encoder and decoder works at 1/2^i of the image size with ``ch * ch_mult[i]`` channels,
so f = 2^(len(ch_mult) - 1). The latent is regularised either by a KL penalty towards N(0, I) (KL) or by a
codebook (VQ). Module names follow LDM's checkpoints where that costs nothing; ``ldm_lab.convert.autoencoder``
maps the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ldm_lab.nn.distributions import DiagonalGaussian
from ldm_lab.nn.code_restarts import RestartingQuantizer
from ldm_lab.nn.quantize import QuantizerInfo, VectorQuantizer
from ldm_lab.nn.resnet import Downsample, ResBlock, Upsample, group_norm

NORM_EPS = 1e-6  # every GroupNorm of the autoencoder (the U-Net uses 1e-5)


class Regularizer(Enum):
    """How the latent space is kept well-behaved (LDM §3.1)."""

    KL = "kl"  # a slight KL penalty towards a standard normal, as in a VAE
    VQ = "vq"  # a vector-quantisation layer, absorbed into the decoder


@dataclass(frozen=True)
class AutoencoderConfig:
    """First-stage autoencoder. Defaults are the KL-f8 VAE of Stable Diffusion 1.x/2.x and SDXL."""

    ch: int = 128  # width of level 0; level i has ch * ch_mult[i] channels
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)  # one entry per level; downsampling factor f = 2^(levels - 1)
    num_res_blocks: int = 2  # ResBlocks per encoder level (decoder levels have one more)
    attn_resolutions: tuple[int, ...] = ()  # feature-map sizes, at `resolution`, whose levels add self-attention
    resolution: int = 256  # nominal image size, only used to place attn_resolutions (any size runs)
    in_channels: int = 3  # image channels in
    out_channels: int = 3  # image channels out
    z_channels: int = 4  # channels between encoder/decoder and the 1x1 quant convs
    embed_dim: int = 4  # channels of the latent the diffusion model sees
    regularizer: Regularizer = Regularizer.KL
    codebook_size: int | None = None  # VQ only: number of codes K
    commitment_beta: float = 0.25  # VQ only: weight of the commitment term (VQ-VAE eq. 3)
    restart_idle_codes: bool = False  # VQ only: while training, move codes left unchosen onto latents of the
                                      # batch (ldm_lab.nn.code_restarts; short runs on small data). LDM: False
    mid_attention: bool = True  # self-attention in the middle blocks (False: LDM's vq-f4-noattn)
    dropout: float = 0.0  # dropout inside the ResBlocks
    decoder_ch: int | None = None  # width of the decoder's level 0 (None: ch). A decoder wider than its encoder
                                   # (Asymmetric VQGAN, Zhu et al. 2023) can be trained behind a frozen encoder,
                                   # keeping the latent space a diffusion model learned
    decoder_num_res_blocks: int | None = None  # the decoder's num_res_blocks (its levels have one block more,
                                               # as LDM's); None: the encoder's

    def __post_init__(self) -> None:
        if not self.ch_mult:
            raise ValueError("ch_mult is empty; give one multiplier per level, e.g. (1, 2, 4, 4) for f = 8.")
        vq = self.regularizer is Regularizer.VQ
        if vq != (self.codebook_size is not None):
            raise ValueError(f"codebook_size={self.codebook_size} with regularizer={self.regularizer.name}: "
                             "a VQ autoencoder needs codebook_size (e.g. 8192) and a KL one must leave it None.")
        if self.restart_idle_codes and not vq:
            raise ValueError("restart_idle_codes applies to a VQ codebook; a KL autoencoder has none: leave it False.")
        unused = set(self.attn_resolutions) - {self.resolution // 2**i for i in range(len(self.ch_mult))}
        if unused:
            raise ValueError(f"attn_resolutions {sorted(unused)} match no level; with resolution={self.resolution} "
                             f"and {len(self.ch_mult)} levels the feature maps are "
                             f"{[self.resolution // 2**i for i in range(len(self.ch_mult))]}.")

    @property
    def downsampling_factor(self) -> int:
        """f: image side / latent side."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def double_z(self) -> bool:
        """The encoder emits mean and log-variance (2 * z_channels): true exactly for KL."""
        return self.regularizer is Regularizer.KL

    def width(self, level: int) -> int:
        return self.ch * self.ch_mult[level]

    def decoder_width(self, level: int) -> int:
        return (self.decoder_ch or self.ch) * self.ch_mult[level]

    @property
    def symmetric(self) -> bool:
        """Whether the decoder is as wide and as deep as the encoder (as in LDM and Stable Diffusion)."""
        return self.decoder_width(0) == self.width(0) and self.decoder_blocks == self.num_res_blocks + 1

    @property
    def decoder_blocks(self) -> int:
        """ResBlocks per decoder level (LDM's decoder has one more than its encoder)."""
        return (self.num_res_blocks if self.decoder_num_res_blocks is None else self.decoder_num_res_blocks) + 1

    def has_attention(self, level: int) -> bool:
        return self.resolution // 2**level in self.attn_resolutions


# LDM's pretrained first stages (models/first_stage_models/*/config.yaml) and the SD / SDXL VAE.
KL_F8 = AutoencoderConfig()
KL_F4 = AutoencoderConfig(ch_mult=(1, 2, 4), z_channels=3, embed_dim=3)
KL_F16 = AutoencoderConfig(ch_mult=(1, 1, 2, 2, 4), attn_resolutions=(16,), z_channels=16, embed_dim=16)
KL_F32 = AutoencoderConfig(ch_mult=(1, 1, 2, 2, 4, 4), attn_resolutions=(16, 8), z_channels=64, embed_dim=64)
VQ_F4 = AutoencoderConfig(ch_mult=(1, 2, 4), z_channels=3, embed_dim=3, regularizer=Regularizer.VQ,
                          codebook_size=8192)
VQ_F4_NOATTN = AutoencoderConfig(ch_mult=(1, 2, 4), z_channels=3, embed_dim=3, regularizer=Regularizer.VQ,
                                 codebook_size=8192, mid_attention=False)
VQ_F8 = AutoencoderConfig(ch_mult=(1, 2, 2, 4), attn_resolutions=(32,), z_channels=4, embed_dim=4,
                          regularizer=Regularizer.VQ, codebook_size=16384)
VQ_F16 = AutoencoderConfig(ch_mult=(1, 1, 2, 2, 4), attn_resolutions=(16,), z_channels=8, embed_dim=8,
                           regularizer=Regularizer.VQ, codebook_size=16384)
NAMED_CONFIGS = {"KL_F4": KL_F4, "KL_F8": KL_F8, "KL_F16": KL_F16, "KL_F32": KL_F32, "VQ_F4": VQ_F4,
                 "VQ_F4_NOATTN": VQ_F4_NOATTN, "VQ_F8": VQ_F8, "VQ_F16": VQ_F16}


class PixelAttention(nn.Module):
    """Single-head self-attention among all pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, NORM_EPS)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        """(b, c, h, w) -> (b, c, h, w)."""
        tokens = rearrange(self.norm(x), "b c h w -> b 1 (h w) c")  # one head
        out = F.scaled_dot_product_attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens))
        return x + rearrange(self.to_out(out), "b 1 (h w) c -> b c h w", h=x.shape[2])


class MidBlock(nn.Module):
    """ResBlock, attention, ResBlock at the lowest resolution."""

    def __init__(self, channels: int, attention: bool, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResBlock(channels, channels, None, dropout, eps=NORM_EPS)
        self.attn = PixelAttention(channels) if attention else nn.Identity()
        self.block_2 = ResBlock(channels, channels, None, dropout, eps=NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn(self.block_1(x)))


class Level(nn.Module):
    """One resolution: ResBlocks (each followed by attention if asked), then a resampler (or none)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, attention: bool, dropout: float,
                 resample: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(in_channels if j == 0 else out_channels, out_channels, None, dropout, eps=NORM_EPS)
            for j in range(num_blocks))
        self.attentions = nn.ModuleList(PixelAttention(out_channels) for _ in range(num_blocks if attention else 0))
        self.resample = resample

    def forward(self, x: Tensor) -> Tensor:
        for j, block in enumerate(self.blocks):
            x = block(x)
            if self.attentions:
                x = self.attentions[j](x)
        return self.resample(x)


class Encoder(nn.Module):
    """Image ``(b, in_channels, H, W)`` -> ``(b, z_channels [x2 for KL], H/f, W/f)``."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c, last = config, len(config.ch_mult) - 1
        self.conv_in = nn.Conv2d(c.in_channels, c.ch, 3, padding=1)
        self.levels = nn.ModuleList(
            Level(c.width(i - 1) if i else c.ch, c.width(i), c.num_res_blocks, c.has_attention(i), c.dropout,
                  Downsample(c.width(i), asymmetric_padding=True) if i < last else nn.Identity())
            for i in range(last + 1))
        self.mid = MidBlock(c.width(last), c.mid_attention, c.dropout)
        self.norm_out = group_norm(c.width(last), NORM_EPS)
        self.conv_out = nn.Conv2d(c.width(last), c.z_channels * (2 if c.double_z else 1), 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for level in self.levels:
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(self.mid(x))))


class Decoder(nn.Module):
    """Latent ``(b, z_channels, h, w)`` -> image ``(b, out_channels, h*f, w*f)``.

    ``levels[i]`` works at the same resolution as the encoder's ``levels[i]``; they run deepest first.
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c, last = config, len(config.ch_mult) - 1
        width = c.decoder_width
        self.conv_in = nn.Conv2d(c.z_channels, width(last), 3, padding=1)
        self.mid = MidBlock(width(last), c.mid_attention, c.dropout)
        self.levels = nn.ModuleList(
            Level(width(min(i + 1, last)), width(i), c.decoder_blocks, c.has_attention(i), c.dropout,
                  Upsample(width(i)) if i > 0 else nn.Identity())
            for i in range(last + 1))
        self.norm_out = group_norm(width(0), NORM_EPS)
        self.conv_out = nn.Conv2d(width(0), c.out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.mid(self.conv_in(z))
        for level in reversed(self.levels):
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))


@dataclass(frozen=True)
class AutoencoderOutput:
    reconstruction: Tensor  # (b, out_channels, H, W)
    posterior: DiagonalGaussian | None = None  # KL: q(z | x)
    quantizer: QuantizerInfo | None = None  # VQ: indices, loss and code-usage statistics


class Autoencoder(nn.Module):
    """Encoder, 1x1 ``quant_conv`` into the latent, regulariser, 1x1 ``post_quant_conv``, decoder (LDM §3.1)."""

    LATENT_SPACE_PARTS = ("encoder", "quant_conv")  # the modules that define the latent space (a decoder can change)

    def __init__(self, config: AutoencoderConfig = KL_F8) -> None:
        super().__init__()
        self.config = config
        moments = 2 if config.double_z else 1  # KL latents carry a mean and a log-variance
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv2d(moments * config.z_channels, moments * config.embed_dim, 1)
        quantizer = RestartingQuantizer if config.restart_idle_codes else VectorQuantizer
        self.quantizer = (quantizer(config.codebook_size, config.embed_dim, config.commitment_beta)
                          if config.regularizer is Regularizer.VQ else None)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        self.decoder = Decoder(config)

    def encode(self, x: Tensor) -> DiagonalGaussian | tuple[Tensor, QuantizerInfo]:
        """KL: the posterior q(z | x). VQ: the quantised latent ``(b, embed_dim, H/f, W/f)`` and its statistics."""
        h = self.quant_conv(self.encoder(x))
        return self.quantizer(h) if self.quantizer is not None else DiagonalGaussian.from_moments(h)

    def decode(self, z: Tensor) -> Tensor:
        """Latent ``(b, embed_dim, h, w)`` -> image. VQ latents are snapped to the codebook first, since the
        quantiser belongs to the decoder (LDM §3.1): a diffusion model's continuous output decodes too."""
        if self.quantizer is not None:
            z, _ = self.quantizer(z)
        return self._decode(z)

    def _decode(self, z: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: Tensor, sample_posterior: bool = True) -> AutoencoderOutput:
        """Reconstruct ``x``; KL samples the posterior (``sample_posterior=False``: its mean)."""
        encoded = self.encode(x)
        if isinstance(encoded, DiagonalGaussian):
            z = encoded.sample() if sample_posterior else encoded.mode()
            return AutoencoderOutput(self._decode(z), posterior=encoded)
        z_q, info = encoded
        return AutoencoderOutput(self._decode(z_q), quantizer=info)
