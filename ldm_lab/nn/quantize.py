"""Vector quantisation (van den Oord et al. 2017, "VQ-VAE"), the VQ-regulariser of LDM's first stage (§3.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


@dataclass(frozen=True)
class QuantizerInfo:
    """What one quantisation step did."""

    indices: Tensor  # (batch, height, width): the code chosen for each latent pixel
    loss: Tensor  # scalar: codebook + commitment terms, beta on one of them (see VectorQuantizer)
    perplexity: Tensor  # scalar: exp(entropy of code use) in this batch; 1 = a single code, K = all used evenly
    usage: Tensor  # scalar: fraction of the K codes used at least once in this batch


def code_usage(indices: Tensor, num_codes: int) -> tuple[Tensor, Tensor]:
    """Perplexity and used fraction of a batch of code indices (detects codebook collapse)."""
    counts = torch.bincount(indices.flatten(), minlength=num_codes).float()
    p = counts / counts.sum()
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return entropy.exp(), (counts > 0).float().mean()


class VectorQuantizer(nn.Module):
    """Snap every latent pixel to its nearest of ``num_codes`` learned vectors of width ``dim``.

    The loss is a codebook term ``||sg[z] - e||^2`` (moves the codes) plus a commitment term ``||z - sg[e]||^2``
    (moves the encoder), with beta on one of them; the gradient reaches the encoder through the straight-through
    estimator. ``legacy=True`` (default, for LDM replicas) is taming's ``VectorQuantizer2(legacy=True)``, which
    LDM's VQ first stages train with: ``||z - sg[e]||^2 + beta ||sg[z] - e||^2``, beta on the codebook term.
    ``legacy=False`` is VQ-VAE's eq. 3: ``||sg[z] - e||^2 + beta ||z - sg[e]||^2``, beta on the commitment term.
    The flag adds no parameter or buffer: checkpoints load either way.
    """

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, legacy: bool = True) -> None:
        super().__init__()
        self.beta, self.legacy = beta, legacy
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / num_codes, 1.0 / num_codes)

    def nearest_code(self, z: Tensor) -> Tensor:
        """Index of the closest code (Euclidean) for each pixel: ``(b, c, h, w) -> (b, h, w)``."""
        flat = rearrange(z, "b c h w -> (b h w) c")
        indices = torch.cdist(flat, self.codebook.weight).argmin(dim=1)
        return indices.view(z.shape[0], *z.shape[2:])

    def lookup(self, indices: Tensor) -> Tensor:
        """Code vectors for indices: ``(b, h, w) -> (b, c, h, w)``."""
        return rearrange(self.codebook(indices), "b h w c -> b c h w")

    def codebook_and_commitment_loss(self, z: Tensor, z_q: Tensor) -> Tensor:
        """The VQ loss of latents ``z`` and their codes ``z_q``, beta placed by ``legacy`` (class docstring)."""
        codebook, commitment = F.mse_loss(z_q, z.detach()), F.mse_loss(z, z_q.detach())
        return commitment + self.beta * codebook if self.legacy else codebook + self.beta * commitment

    def forward(self, z: Tensor) -> tuple[Tensor, QuantizerInfo]:
        """Quantise ``z`` ``(b, c, h, w)``; the result has z's values replaced by codes, z's gradient."""
        indices = self.nearest_code(z)
        z_q = self.lookup(indices)
        loss = self.codebook_and_commitment_loss(z, z_q)
        perplexity, usage = code_usage(indices, self.codebook.num_embeddings)
        z_q = z + (z_q - z).detach()  # straight-through: forward uses the codes, backward is the identity
        return z_q, QuantizerInfo(indices, loss, perplexity, usage)
