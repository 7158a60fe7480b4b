"""SDXL's micro-conditioning (Podell et al. 2023, §2.2): scalars about the training image, embedded with Fourier
features and appended to the vector condition ``y``.

Each scalar gets 256 sinusoidal features (``ldm_lab.nn.embeddings.fourier_features``; SGM's
``ConcatTimestepEmbedderND``): original size (h, w) and crop top-left (top, left) tell the model how the image
was made, target size (h, w) what is asked for; the refiner replaces target size by an aesthetic score. At
sampling time SDXL passes original size = target size = the image size and crop (0, 0): the default inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ldm_lab.conditioning.base import Embedder, Output
from ldm_lab.nn.embeddings import fourier_features


@dataclass(frozen=True)
class FourierEmbedderConfig:
    """Scalars per item, features per scalar, and the value used when a batch does not give them."""

    num_values: int = 2                       # 2 for (h, w) or (top, left); 1 for the aesthetic score
    dim: int = 256                            # features per scalar (SDXL: 256)
    default: tuple[float, ...] | None = None  # used when the batch lacks the key (sampling); None: required

    def __post_init__(self) -> None:
        if self.default is not None and len(self.default) != self.num_values:
            raise ValueError(f"default {self.default} has {len(self.default)} values; give {self.num_values}.")

    @property
    def outputs(self) -> dict[Output, int]:
        return {Output.VECTOR: self.num_values * self.dim}

    def build(self) -> FourierEmbedder:
        return FourierEmbedder(self)


class FourierEmbedder(Embedder):
    """Scalars (b, num_values) -> y part (b, num_values x dim). No parameters."""

    def __init__(self, config: FourierEmbedderConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, values: Any) -> dict[Output, Tensor]:
        n = self.config.num_values
        values = torch.as_tensor(values, dtype=torch.float32)
        if values.numel() % n or (values.ndim > 1 and values.shape[-1] != n):
            raise ValueError(f"expected {n} value(s) per item, e.g. (height, width); got shape {tuple(values.shape)}.")
        return {Output.VECTOR: fourier_features(values.reshape(-1, n), self.config.dim)}

    def default_input(self, num: int) -> tuple[Tensor] | None:
        return None if self.config.default is None else (torch.tensor([self.config.default] * num),)
