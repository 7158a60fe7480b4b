"""What a latent diffusion model sees (LDM §3): latents drawn as images, and noised latents decoded back to
pixels, so the forward process can be watched in the space the U-Net works in.

    images = latents_as_images(latents)                                   # [N, 3, h, w] in [-1, 1]
    strip = decoded_noised_latents(autoencoder, image, scale, schedule, timesteps=[0, 250, 500, 750, 999])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ldm_lab.device import model_device
from ldm_lab.diffusion.parameterisation import add_noise
from ldm_lab.diffusion.schedules import NoiseSchedule
from ldm_lab.nn.autoencoder import Autoencoder
from ldm_lab.nn.distributions import DiagonalGaussian


def latents_as_images(latents: Tensor, spread: float = 3.0) -> Tensor:
    """``[N, c, h, w]`` latents as ``[N, 3, h, w]`` images in [-1, 1]: their first three channels as red, green
    and blue (a one- or two-channel latent repeats its last), each standardised over the whole set and
    ``spread`` standard deviations mapped to the full range."""
    channels = latents.detach().float().cpu()
    channels = torch.cat([channels] + [channels[:, -1:]] * max(0, 3 - channels.shape[1]), dim=1)[:, :3]
    mean = channels.mean(dim=(0, 2, 3), keepdim=True)
    std = channels.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-8)
    return ((channels - mean) / (spread * std)).clamp(-1, 1)


def encode_mean(autoencoder: Autoencoder, images: Tensor) -> Tensor:
    """E(x) without sampling: the posterior mean (KL) or the latent before quantisation (VQ, the latent LDM
    diffuses, ``VQModelInterface.encode``)."""
    if autoencoder.quantizer is not None:
        return autoencoder.quant_conv(autoencoder.encoder(images))
    encoded = autoencoder.encode(images)
    return encoded.mode() if isinstance(encoded, DiagonalGaussian) else encoded[0]


@torch.no_grad()
def decoded_noised_latents(autoencoder: Autoencoder, image: Tensor, scale: float, schedule: NoiseSchedule,
                           timesteps: Sequence[int], seed: int = 0) -> Tensor:
    """One image ``[C, H, W]`` in [-1, 1] encoded, scaled to z0 = scale * E(x) (LDM App. G), noised to
    z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps at each of ``timesteps`` with one shared eps, and decoded as
    D(z_t / scale): ``[len(timesteps), C, H, W]`` in [-1, 1]. What the U-Net is handed at step t, in pixels."""
    autoencoder = autoencoder.eval()
    device = model_device(autoencoder)
    z0 = scale * encode_mean(autoencoder, image[None].to(device))
    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed)).to(device)
    t = torch.as_tensor(list(timesteps), dtype=torch.long)
    alpha_bar = schedule.alpha_bar_at(t).to(device).reshape(-1, 1, 1, 1)
    z_t = add_noise(z0.expand(len(t), -1, -1, -1), eps.expand(len(t), -1, -1, -1), alpha_bar)
    return autoencoder.decode(z_t / scale).clamp(-1, 1).cpu()
