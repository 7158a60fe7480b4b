"""What the small lab models (trained on a 2-core CPU in minutes) share across families: the first-stage designs,
the frozen lab-clip text tower, and the U-Net every conditioned lab model grows from.

The lab models trained with the CPU recipe predict v (Salimans & Ho 2022, SD 2): an eps-model's estimate of the
clean latent at high noise, x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab), multiplies its error by sqrt((1 - ab) / ab)
(about 7 at t = 800 of scaled_linear), and the small lab U-Nets' x0 estimates there were textured noise; v's is
x0 = sqrt(ab) x_t - sqrt(1 - ab) v, whose error is never amplified.
"""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.nn.autoencoder import AutoencoderConfig
from ldm_lab.nn.text import TINY, Activation, TextEncoderConfig
from ldm_lab.nn.unet import UNetConfig

# The compression ablation's first-stage design: KL, f = 4, 32 channels at every level (0.29 M parameters), so the
# twelve first stages of the ablation ship in about 8 MiB together. Its KL-f4 is ``lab-kl-f4``.
LAB_ABLATION_AUTOENCODER = AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=1, resolution=64)
# lab-emoji's first stage: KL, f = 4, 4 latent channels (64x64x3 -> 16x16x4), 32/32/64 channels: wider at the
# 16x16 level, where it costs a quarter of a full-resolution level and holds what the latent must describe.
LAB_AUTOENCODER = AutoencoderConfig(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, resolution=64)
# lab-emoji's first stage as shipped: that encoder, frozen, and a decoder twice as wide with one more block per level
# trained behind it (Asymmetric VQGAN, Zhu et al. 2023): the latent space stays, the reconstructions sharpen
# (held-out PSNR 19.5 dB with the symmetric decoder; the manifest has the new one's).
LAB_EMOJI_AUTOENCODER = replace(LAB_AUTOENCODER, decoder_ch=64, decoder_num_res_blocks=2)
LAB_TEXT = TINY
LAB_LATENT_UNET = UNetConfig(model_channels=32, channel_mult=(1, 2, 4), num_res_blocks=1,
                             transformer_depth=(0, 1, 1), num_heads=None, head_dim=32,
                             context_dim=LAB_TEXT.width, use_linear_projection=True,
                             context_description=f"the lab text encoder's last layer, {LAB_TEXT.width}")

# The text-to-image lab models read the shipped lab-clip's text tower, frozen, as Stable Diffusion reads a frozen
# CLIP (ldm_lab.evaluation_models.lab_clip.LabClipConfig: 64 wide, 3 blocks, 4 heads, 128-wide projection). Its
# weights stay in lab_clip.safetensors, so no text model ships a copy of the 49,408-token embedding.
LAB_CLIP_TEXT = TextEncoderConfig(width=64, num_layers=3, num_heads=4, activation=Activation.GELU,
                                  projection_dim=128, pad_token_id=0)
# The conditioned lab U-Nets: about 1.2 M parameters (a 2.4 MiB fp16 file), cross-attention at 1/2 and 1/4 of the
# latent's side.
LAB_CONDITIONED_UNET = LAB_LATENT_UNET.replace(channel_mult=(1, 1, 2))
