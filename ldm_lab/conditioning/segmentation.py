"""Segmentation maps, concatenated to the latent (LDM §4.3.2, semantic synthesis; SD's inpainting model also
conditions by concatenation).

A class map (b, h, w) becomes one-hot channels (b, num_classes, h, w), averaged over f x f cells to the latent's
size (h / f, w / f). Area averaging rather than nearest: a latent cell then holds the *fraction* of each class in
the pixels it stands for, so a small shape or a thin edge still shows up instead of vanishing between sampled
pixels (LDM's ``SpatialRescaler`` does the same by repeated bilinear halving). The unconditional map is zeros
(no class anywhere), not "background everywhere".

A difference with the official code: LDM's semantic-synthesis config gives ``SpatialRescaler`` an
``out_channels``, so a learned 1x1 convolution maps its 182 COCO-Stuff classes to 3 channels before the
concatenation; we concatenate the one-hot fractions themselves (Shapes has only 6 classes), and the embedder has
no parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ldm_lab.conditioning.base import Embedder, Output


@dataclass(frozen=True)
class SegmentationEmbedderConfig:
    """One-hot class channels at the latent's resolution."""

    num_classes: int          # classes in the map, background included (Shapes: 1 + 5 kinds = 6)
    downsampling_factor: int  # f of the first stage: the map is averaged over f x f pixels (1: pixel space)

    @property
    def outputs(self) -> dict[Output, int]:
        return {Output.CONCAT: self.num_classes}

    def build(self) -> SegmentationEmbedder:
        return SegmentationEmbedder(self)


class SegmentationEmbedder(Embedder):
    """Class map (b, h, w) -> concat channels (b, num_classes, h / f, w / f). No parameters."""

    def __init__(self, config: SegmentationEmbedderConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, segmentation: Tensor) -> dict[Output, Tensor]:
        classes, f = self.config.num_classes, self.config.downsampling_factor
        segmentation = torch.as_tensor(segmentation).long()
        if segmentation.ndim != 3 or segmentation.shape[-1] % f or segmentation.shape[-2] % f:
            raise ValueError(f"a segmentation batch is a class map (b, h, w) with h and w multiples of f = {f}; got "
                             f"shape {tuple(segmentation.shape)}. Pass the dataset's 'segmentation' at image size.")
        if segmentation.min() < 0 or segmentation.max() >= classes:
            raise ValueError(f"segmentation classes must be in 0..{classes - 1} (0: background), got values "
                             f"{int(segmentation.min())}..{int(segmentation.max())}.")
        one_hot = F.one_hot(segmentation, classes).permute(0, 3, 1, 2).float()  # (b, classes, h, w)
        return {Output.CONCAT: F.avg_pool2d(one_hot, f) if f > 1 else one_hot}
