"""A perceptual distance on features we trained ourselves: the image tower of the shipped ``lab-clip``.

LDM's first stages use LPIPS on ImageNet VGG features (Zhang et al. 2018); those weights are not available
here, and lab-clip's ViT was trained on exactly our images (emoji and shapes). The distance is LPIPS without
its learned per-channel weights (the paper's "baseline" variant): at every transformer block, unit-normalise
each token's features and average their squared difference over tokens, then average over blocks (so the
distance lies in [0, 4], near L1's scale).
Its patches are 16x16 pixels, so it judges layout and colour; the L1 term keeps the fine detail.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ldm_lab.evaluation_models.lab_clip import load_lab_clip


def normalised_distance(a: Tensor, b: Tensor) -> Tensor:
    """Per image ``(b,)``: mean over positions of ||a/|a| - b/|b|||^2 on channel-unit features ``(b, c, h, w)``."""
    return (F.normalize(a, dim=1) - F.normalize(b, dim=1)).pow(2).sum(dim=1).flatten(1).mean(dim=1)


class LabClipPerceptual(nn.Module):
    """Frozen lab-clip image tower; ``forward(x, y)`` is the perceptual distance per image ``(b,)``, images RGB
    in [-1, 1] (resized to the tower's input size)."""

    def __init__(self, tower: nn.Module | None = None) -> None:
        super().__init__()
        self.tower = (tower or load_lab_clip().visual).eval().requires_grad_(False)

    def features(self, images: Tensor) -> list[Tensor]:
        side = self.tower.image_size[0]
        if images.shape[-2:] != (side, side):
            images = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        return self.tower.forward_intermediates(images, intermediates_only=True)["image_intermediates"]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape[1] != 3:
            raise ValueError(f"the lab-clip perceptual loss takes RGB images, got {x.shape[1]} channel(s); "
                             "set perceptual_weight=0 for grey images.")
        distances = [normalised_distance(a, b) for a, b in zip(self.features(x), self.features(y))]
        return sum(distances) / len(distances)

    def train(self, mode: bool = True) -> LabClipPerceptual:
        return super().train(False)  # always frozen, in eval mode

