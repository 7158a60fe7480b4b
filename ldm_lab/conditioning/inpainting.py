"""The inpainting model's condition (SD 1.5-inpainting; LDM §4.5): the mask and the masked image's latent,
concatenated to the noisy latent, so the U-Net sees [z_t (4), mask (1), E(masked image) (4)] = 9 channels.

The batch carries them ready-made under ``inpaint`` (b, 1 + C, h, w), made by
``ldm_lab.tasks.inpainting.inpainting_input`` with the model's frozen first stage: the embedder has no weights and
only checks the shape, so the masked image is encoded once per batch however many sampler steps read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ldm_lab.conditioning.base import Embedder, Output

INPAINT_KEY = "inpaint"  # the batch key of the mask and masked-image latent, (b, 1 + C, h, w)


@dataclass(frozen=True)
class InpaintingEmbedderConfig:
    """Mask (1 channel) and masked-image latent (``latent_channels``), at the latent's resolution."""

    latent_channels: int  # channels of the first stage's latent (SD and lab-autoencoder: 4)

    @property
    def outputs(self) -> dict[Output, int]:
        return {Output.CONCAT: 1 + self.latent_channels}

    def build(self) -> InpaintingEmbedder:
        return InpaintingEmbedder(self)


class InpaintingEmbedder(Embedder):
    """``inpaint`` (b, 1 + C, h, w) -> concat channels, unchanged. No parameters."""

    def __init__(self, config: InpaintingEmbedderConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, inpaint: Tensor) -> dict[Output, Tensor]:
        inpaint = torch.as_tensor(inpaint)
        channels = 1 + self.config.latent_channels
        if inpaint.ndim != 4 or inpaint.shape[1] != channels:
            raise ValueError(f"the inpainting condition is (b, {channels}, h, w): the mask and the masked image's "
                             f"{self.config.latent_channels}-channel latent; got shape {tuple(inpaint.shape)}. Make "
                             "it with ldm_lab.tasks.inpainting.inpainting_input(model, images, masks).")
        return {Output.CONCAT: inpaint}
