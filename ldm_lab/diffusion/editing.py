"""Editing with a sampler: SDEdit / img2img by strength, and inpainting by mask blending or by concatenation.

All in the sampler's scaling x = x0 + sigma * eps. Masks are 1 where new content is generated and 0 where the
image is kept; they broadcast against the latent (e.g. [B, 1, H, W]).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ldm_lab.diffusion.denoiser import ModelFn
from ldm_lab.diffusion.samplers import AfterStep


def strength_sigmas(sigmas: Tensor, strength: float) -> Tensor:
    """SDEdit (Meng et al. 2022, §3): run only the last ``int(steps * strength)`` steps, as diffusers' img2img
    does. Strength 0 keeps just the final level (no steps); strength 1 keeps all."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1] (0: return the image, 1: start from the noisiest level), "
                         f"got {strength}")
    steps = len(sigmas) - 1
    return sigmas[steps - int(steps * strength):]


def noised_image(image: Tensor, noise: Tensor, sigma: float) -> Tensor:
    """The forward process in the sampler's scaling: x = x0 + sigma * eps (= x_t / sqrt(ab_t))."""
    return image + sigma * noise


def mask_blending(image: Tensor, mask: Tensor, noise: Tensor) -> AfterStep:
    """Inpainting with any model (LDM §4.5's baseline; RePaint without resampling): after every step, replace
    the known region (mask = 0) by the image noised to the same level, with the same noise each time."""
    def blend(x: Tensor, sigma_next: float) -> Tensor:
        return mask * x + (1 - mask) * noised_image(image, noise, sigma_next)

    return blend


@dataclass(frozen=True)
class ImageEdit:
    """Start sampling from an image instead of pure noise: SDEdit / img2img by ``strength``, and inpainting by
    mask blending when a ``mask`` is given (``sample(..., edit=ImageEdit(image, strength=0.6))``)."""

    image: Tensor                # the image (or latent) to edit, [B, C, H, W] in the sampler's input scaling
    strength: float = 1.0        # share of the steps run (SDEdit): 0 returns the image, 1 starts at the noisiest level
    mask: Tensor | None = None   # inpainting: 1 = generate, 0 = keep the image; broadcasts against it ([B, 1, H, W])

    def start(self, sigmas: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, AfterStep | None]:
        """The noise levels still to visit, the starting point (the image noised to the first of them), and the
        blending to apply after every step (None without a mask)."""
        sigmas = strength_sigmas(sigmas, self.strength)
        blend = None if self.mask is None else mask_blending(self.image, self.mask, noise)
        return sigmas, noised_image(self.image, noise, float(sigmas[0])), blend


def concat_inpainting_model(model_fn: ModelFn, mask: Tensor, masked_image_latent: Tensor) -> ModelFn:
    """Inpainting models (SD-inpainting, 9 input channels) see [latent (4), mask (1), masked-image latent (4)]
    concatenated on channels; the mask is at latent resolution, 1 = to inpaint."""
    def concatenated(x: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        extra = torch.cat([mask, masked_image_latent], dim=1).to(x).expand(x.shape[0], -1, -1, -1)
        return model_fn(torch.cat([x, extra], dim=1), t, **cond)

    return concatenated
