"""The KL-regularised autoencoder's posterior: a diagonal Gaussian over latent pixels (LDM §3.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LOGVAR_RANGE = (-30.0, 20.0)  # LDM clamps the log-variance so exp() can neither vanish nor overflow


@dataclass(frozen=True)
class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(logvar))), both ``(batch, channels, height, width)``."""

    mean: Tensor
    logvar: Tensor

    @classmethod
    def from_moments(cls, moments: Tensor) -> DiagonalGaussian:
        """Split the encoder output ``(b, 2c, h, w)`` into mean and (clamped) log-variance, ``(b, c, h, w)`` each."""
        mean, logvar = moments.chunk(2, dim=1)
        return cls(mean, logvar.clamp(*LOGVAR_RANGE))

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """z = mean + std * eps, eps ~ N(0, I): the reparameterisation trick (Kingma & Welling 2014, §2.4)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> Tensor:
        """The most likely latent, the mean; what Stable Diffusion's img2img encodes with ``sample=False``."""
        return self.mean

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) per example, ``(batch,)``: 1/2 sum(mean^2 + var - 1 - logvar) over c, h, w."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=(1, 2, 3))
