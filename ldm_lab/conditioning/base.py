"""What every embedder shares: the kind of output it gives the U-Net, and how "no condition" is spelled.

An embedder is LDM's domain-specific encoder tau_theta (§3.3). Its config declares its outputs and their widths
(``outputs``), so a conditioner can be checked against a U-Net before anything runs.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from ldm_lab.device import model_device


class Output(Enum):
    """Where an embedding enters the U-Net (LDM §3.3; SGM's crossattn / vector / concat)."""

    CONTEXT = "context"  # tokens (b, m, width): keys and values of every cross-attention
    VECTOR = "vector"    # (b, width): lifted by an MLP and added to the time embedding (SDXL's y)
    LABEL = "label"      # class ids (b,): the U-Net's own embedding table adds them to the time embedding (ADM)
    CONCAT = "concat"    # channels (b, width, h, w): concatenated to the latent (LDM's semantic synthesis)

    @property
    def unet_keyword(self) -> str:
        """The ``UNet.forward`` keyword this output is passed as."""
        return {Output.CONTEXT: "context", Output.VECTOR: "y", Output.LABEL: "y", Output.CONCAT: "concat"}[self]


class Null(Enum):
    """What "no condition" is for one embedder (classifier-free guidance, Ho & Salimans 2022)."""

    NULL_INPUT = "null input"  # embed the embedder's own null input: the empty prompt, the null class, no boxes
    ZEROS = "zeros"            # zeros in place of the embedding (SGM's default ucg; SDXL's unconditional text)
    KEEP = "keep"              # the condition itself: SDXL keeps size and crop in the unconditional branch


class Embedder(nn.Module):
    """Base class: ``forward(*inputs) -> {Output: Tensor}``, one input per batch key of the embedder."""

    def forward(self, *inputs: Any) -> dict[Output, Tensor]:
        raise NotImplementedError

    def null_input(self, num: int) -> tuple[Any, ...]:
        """Inputs meaning "no condition" for ``num`` items (used with ``Null.NULL_INPUT``)."""
        raise ValueError(f"{type(self).__name__} has no null input; use Null.ZEROS for it.")

    def default_input(self, num: int) -> tuple[Any, ...] | None:
        """Inputs used when a batch lacks this embedder's keys (None: the keys are required)."""
        return None

    @property
    def pretrained_from(self) -> str | None:
        """The shipped model its weights come from (a frozen CLIP text tower: "lab-clip"); None: trained here."""
        return None

    def load_pretrained(self) -> None:
        """Load the weights of ``pretrained_from``; nothing to do for an embedder trained here."""

    @property
    def device(self) -> torch.device:
        """Where the embedder's weights live (its buffers' place for parameter-free embedders; else the CPU)."""
        return model_device(self)

