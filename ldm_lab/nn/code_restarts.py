"""Dead-code restarts for vector quantisation: keep a codebook in use when training is short and data is small.

A code that no latent pixel chooses gets no gradient and stays dead, and LDM's codebook initialisation (tiny
codes, uniform in +-1/K) leaves all but a handful dead for the first thousands of steps. The lab first stages
train for minutes on ~3.4k images, so their quantisers move a code that has been idle for a while onto a random
latent pixel of the current batch (Dhariwal et al. 2020, Jukebox §2.2 "random restarts"; Zeghidour et al. 2021,
SoundStream §3.3). ``AutoencoderConfig.restart_idle_codes`` selects it. Restarts happen in training mode only;
the state dict is the plain ``VectorQuantizer``'s, so the weights also load where restarts are off. (Several processes would restart different codes: train
it on one.)
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from ldm_lab.nn.quantize import QuantizerInfo, VectorQuantizer


class RestartingQuantizer(VectorQuantizer):
    """A ``VectorQuantizer`` that restarts codes left unchosen for ``idle_factor * num_codes`` latent pixels (the
    number at which a code of an evenly used codebook would have been chosen ``idle_factor`` times)."""

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, idle_factor: float = 8.0) -> None:
        super().__init__(num_codes, dim, beta)
        self.idle_limit = idle_factor * num_codes
        self.register_buffer("idle", torch.zeros(num_codes), persistent=False)  # latent pixels since last chosen

    def forward(self, z: Tensor) -> tuple[Tensor, QuantizerInfo]:
        z_q, info = super().forward(z)
        if self.training:
            self.restart_idle_codes(rearrange(z.detach(), "b c h w -> (b h w) c"), info.indices)
        return z_q, info

    @torch.no_grad()
    def restart_idle_codes(self, latents: Tensor, indices: Tensor) -> int:
        """Count idleness with this batch's choices ``indices``; move the codes idle too long onto random rows of
        ``latents`` ``(n, dim)``. Returns how many codes were restarted."""
        chosen = torch.bincount(indices.flatten(), minlength=len(self.idle)) > 0
        self.idle = torch.where(chosen, 0.0, self.idle + len(latents))
        dead = (self.idle >= self.idle_limit).nonzero().flatten()
        picks = torch.randint(len(latents), (len(dead),), device=latents.device)
        self.codebook.weight[dead] = latents[picks].to(self.codebook.weight.dtype)
        self.idle[dead] = 0.0
        return len(dead)
