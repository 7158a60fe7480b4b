"""Assembled models: the latent diffusion model (first stage + conditioner + U-Net + schedule, LDM §3.3)."""

from ldm_lab.models.latent_diffusion import LatentDiffusion, LatentDiffusionConfig

__all__ = ["LatentDiffusion", "LatentDiffusionConfig"]
