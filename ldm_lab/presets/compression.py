"""The compression ablation (LDM §4.1, Tab. 8, Fig. 6; notebooks 02 and 03): first stages at every downsampling
factor f, KL and VQ, for 64x64 emoji, and LDM-f, a class-conditional diffusion model on each VQ one (LDM-1 on
pixels). Their training targets: ``ldm_lab.tasks.targets.compression``; the experiments: ``ldm_lab.compression``.

The first stages are ``LAB_ABLATION_AUTOENCODER`` (32 channels at every level, one ResBlock per level) with one
level per halving, so that f is what changes. Latent channels follow LDM: Tab. 8's first stages and the z-shapes
of the ablation's LDM-f (App. E, Tab. 13). Every model here is class-conditional or unconditional, so its
conditions are read from its networks (``from_networks``).
"""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.data import DATASETS
from ldm_lab.nn.autoencoder import AutoencoderConfig, Regularizer
from ldm_lab.nn.unet import UNetConfig
from ldm_lab.presets.base import Preset
from ldm_lab.presets.conditioners import ConditionerOf
from ldm_lab.presets.lab import LAB_ABLATION_AUTOENCODER

COMPRESSION_FACTORS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
LAB_FIRST_STAGE_CH_MULT = {f: (1,) * f.bit_length() for f in COMPRESSION_FACTORS}  # log2(f) + 1 levels of 32
LAB_KL_CHANNELS = {1: 3, 2: 2, 4: 4, 8: 4, 16: 16, 32: 64}  # LDM kl-f8/f16/f32; f4: lab-emoji's 4 (LDM kl-f4: 3);
                                                             # f1, f2 (no LDM KL model): as the VQ ones
LAB_VQ_CHANNELS = {1: 3, 2: 2, 4: 3, 8: 4, 16: 8, 32: 32}   # LDM vq-f4/f8/f16 and the ablation's f2 and f32
LAB_VQ_CODEBOOK = {1: 128, 2: 128, 4: 512, 8: 1024, 16: 1024, 32: 1024}  # LDM's K (2048, 8192, 16384) / 16, for
                                                                          # ~3.4k training images, not millions;
                                                                          # f1 (pixels: a palette) as f2


def check_factor(f: int) -> int:
    """``f`` if the ablation has it, else an error listing the factors it has."""
    if f not in COMPRESSION_FACTORS:
        raise ValueError(f"downsampling factor f={f} is not in the compression ablation; choose one of "
                         f"{COMPRESSION_FACTORS} (64x64 images: latents of {[64 // f for f in COMPRESSION_FACTORS]}"
                         " pixels a side).")
    return f


LAB_FIRST_STAGE_ATTENTION_MAX_SIDE = 32  # self-attention in the middle blocks only at latent sides <= this: at f = 1
                                         # it would attend over all 4,096 pixels, 2.0 s of a 2.8 s CPU step at batch
                                         # 16 (f = 8: 0.5 s in all); LDM-1 has no first stage to inherit it from


def lab_first_stage(regularizer: Regularizer, f: int) -> AutoencoderConfig:
    """The lab first stage at factor ``f`` (LDM §3.1) of the compression ablation."""
    vq = regularizer is Regularizer.VQ
    channels = (LAB_VQ_CHANNELS if vq else LAB_KL_CHANNELS)[check_factor(f)]
    return replace(LAB_ABLATION_AUTOENCODER, ch_mult=LAB_FIRST_STAGE_CH_MULT[f], z_channels=channels,
                   embed_dim=channels, regularizer=regularizer, codebook_size=LAB_VQ_CODEBOOK[f] if vq else None,
                   mid_attention=64 // f <= LAB_FIRST_STAGE_ATTENTION_MAX_SIDE,
                   restart_idle_codes=vq)  # LDM's codebook init leaves ours mostly dead over a run of minutes


# LDM-f, the ablation's diffusion models: class-conditional on emoji's categories, as the paper's ImageNet models,
# on the VQ first stages, as the paper's (Tab. 13 gives each LDM-f a codebook size); LDM-1 works on pixels.
# Levels as LDM's, down to 1/32 of the image side (6 at f1, 5 at f2, 4 at f4, 3 at f8 and f16; f32's 2x2 latent
# allows 2), one ResBlock per level, self-attention at latent sides <= 8 (LDM: 32, 16, 8 at 256 px) and in the
# middle. 32 channels per level, the deepest level 64: every U-Net has 1.25M parameters +-20% (LDM: 391M-396M).
LAB_LDM_CHANNEL_MULT = {1: (1, 1, 1, 1, 1, 2), 2: (1, 1, 1, 1, 2), 4: (1, 1, 1, 2), 8: (1, 1, 2), 16: (1, 1, 2),
                        32: (1, 2)}
LAB_LDM_MODEL_CHANNELS = {f: 32 for f in COMPRESSION_FACTORS}
LAB_LDM_ATTENTION_MAX_SIDE = 8  # self-attention at levels whose latent side is at most this


def lab_ldm_unet(f: int) -> UNetConfig:
    """The U-Net of LDM-``f`` on 64x64 emoji: latent side 64 / f, channels of the VQ first stage (RGB at f = 1)."""
    channels, side = (3 if check_factor(f) == 1 else LAB_VQ_CHANNELS[f]), 64 // f
    mult = LAB_LDM_CHANNEL_MULT[f]
    attention = tuple(int(side // 2**level <= LAB_LDM_ATTENTION_MAX_SIDE) for level in range(len(mult)))
    return UNetConfig(in_channels=channels, out_channels=channels, model_channels=LAB_LDM_MODEL_CHANNELS[f],
                      channel_mult=mult, num_res_blocks=1, transformer_depth=attention, num_heads=None, head_dim=32,
                      context_dim=None, num_classes=DATASETS["emoji"].num_classes + 1)  # + the null class


PRESETS: tuple[Preset, ...] = (
    *(Preset(f"lab-{regularizer.value}-f{f}", f"{regularizer.name}-regularised lab first stage, f = {f}, for 64x64 "
             f"emoji (LDM Tab. 8 in miniature)", autoencoder=lab_first_stage(regularizer, f), resolution=(64, 64))
      for regularizer in Regularizer for f in COMPRESSION_FACTORS),
    *(Preset(f"lab-ldm-{f}", f"LDM-{f} of the compression ablation (LDM §4.1, Fig. 6): class-conditional emoji, "
             + ("pixel space" if f == 1 else f"on lab-vq-f{f}"), lab_ldm_unet(f),
             None if f == 1 else lab_first_stage(Regularizer.VQ, f), resolution=(64, 64))
      for f in COMPRESSION_FACTORS),
)

CONDITIONERS: dict[str, ConditionerOf] = {}  # class labels (LDM-f) or nothing (first stages), read from the networks
