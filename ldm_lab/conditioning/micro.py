"""SDXL's micro-conditioning (Podell et al. 2023, §2.2): scalars about the training image, embedded with Fourier
features and appended to the vector condition ``y``.

Each scalar gets 256 sinusoidal features (``ldm_lab.nn.embeddings.fourier_features``; SGM's
``ConcatTimestepEmbedderND``): original size (h, w) and crop top-left (top, left) tell the model how the image
was made, target size (h, w) what is asked for; the refiner replaces target size by an aesthetic score. At
sampling time SDXL passes original size = target size = the image size and crop (0, 0): the default inputs.
A scalar may also have its own value for classifier-free guidance's unconditional branch: the refiner is guided
away from aesthetic score 2.5 towards 6.0 (SGM's ``negative_aesthetic_score``).
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
    unconditional: tuple[float, ...] | None = None  # the null input, embedded in CFG's unconditional branch by a
                                                    # condition with Null.NULL_INPUT (refiner: aesthetic score 2.5)

    def __post_init__(self) -> None:
        for name, values in (("default", self.default), ("unconditional", self.unconditional)):
            if values is not None and len(values) != self.num_values:
                raise ValueError(f"{name} {values} has {len(values)} values; give {self.num_values}.")

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

    def null_input(self, num: int) -> tuple[Tensor]:
        """The unconditional value, e.g. the refiner's negative aesthetic score."""
        if self.config.unconditional is None:
            raise ValueError("this scalar has no unconditional value: give FourierEmbedderConfig(unconditional=...) "
                             "(the refiner's aesthetic score: (2.5,)), or keep it (Null.KEEP) or zero it (Null.ZEROS) "
                             "in the unconditional branch.")
        return (torch.tensor([self.config.unconditional] * num),)
