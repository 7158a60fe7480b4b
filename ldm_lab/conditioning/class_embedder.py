"""Class labels: a learned embedding per class plus a null class (LDM's class-conditional ImageNet models,
``ClassEmbedder`` of configs/latent-diffusion/cin-ldm-vq-f8.yaml: one 512-wide cross-attention token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ldm_lab.conditioning.base import Embedder, Output


@dataclass(frozen=True)
class ClassEmbedderConfig:
    """Labels 0 .. num_classes - 1; label ``num_classes`` is the null class ("no class", for guidance)."""

    num_classes: int                 # real classes (the null class comes on top)
    width: int = 512                 # embedding width (LDM cin: 512); unused for Output.LABEL
    output: Output = Output.CONTEXT  # CONTEXT: one token (LDM cin); VECTOR: a y vector; LABEL: the ids
                                     # themselves, embedded by the U-Net's own table (num_classes + 1 rows)

    def __post_init__(self) -> None:
        if self.output is Output.CONCAT:
            raise ValueError("a class is not a spatial map: choose Output.CONTEXT, VECTOR or LABEL.")

    @property
    def outputs(self) -> dict[Output, int]:
        """Output -> width; for LABEL the width is the table size the U-Net needs (classes + null)."""
        return {self.output: self.num_classes + 1 if self.output is Output.LABEL else self.width}

    def build(self) -> ClassEmbedder:
        return ClassEmbedder(self)


class ClassEmbedder(Embedder):
    """Labels (b,) -> one token (b, 1, width), a vector (b, width), or the labels for the U-Net's table."""

    def __init__(self, config: ClassEmbedderConfig) -> None:
        super().__init__()
        self.config = config
        learned = config.output is not Output.LABEL
        self.embedding = nn.Embedding(config.num_classes + 1, config.width) if learned else None

    def forward(self, labels: Any) -> dict[Output, Tensor]:
        labels = self.check(torch.as_tensor(labels, dtype=torch.long).reshape(-1)).to(self.device)
        if self.embedding is None:
            return {Output.LABEL: labels}
        embedding = self.embedding(labels)  # (b, width)
        return {self.config.output: embedding[:, None] if self.config.output is Output.CONTEXT else embedding}

    def check(self, labels: Tensor) -> Tensor:
        n = self.config.num_classes
        outside = labels[(labels < 0) | (labels > n)]
        if outside.numel():
            raise ValueError(f"class {int(outside[0])} is out of range: this model has classes 0..{n - 1}, and {n} "
                             "means 'no class'. Choose a class in that range.")
        return labels

    def null_input(self, num: int) -> tuple[Tensor]:
        return (torch.full((num,), self.config.num_classes, dtype=torch.long),)
