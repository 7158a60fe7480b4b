"""The Fashion-MNIST classifier whose penultimate layer is the ``fmnist-classifier`` feature space.

FID needs a feature space in which distances mean something about images (Heusel et al. 2017 use Inception-v3's
pool layer). With no Inception weights here, we train a small CNN on Fashion-MNIST and measure FID/KID in its
128-d penultimate activations, as is common for MNIST-like data. Numbers in this space are comparable only with
each other, never with the papers' Inception-FID.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ldm_lab.checkpoints import config_from_fields, load_checkpoint
from ldm_lab.device import model_device

CHECKPOINT_NAME = "fmnist-classifier"


@dataclass(frozen=True)
class ClassifierConfig:
    """A small CNN for 28x28 grey images in [-1, 1]."""
    widths: tuple[int, int] = (32, 64)   # channels at 28x28 and at 14x14
    feature_dim: int = 128               # width of the penultimate layer: the FID feature space
    num_classes: int = 10
    dropout: float = 0.3                 # on the features, before the last layer (training only)
    image_size: int = 28                 # inputs of another size are resized to this


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class FashionClassifier(nn.Module):
    """conv(32) -> pool -> conv(64) -> conv(64) -> pool -> linear(128) -> [features] -> linear(10)."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        narrow, wide = config.widths
        side = config.image_size // 4
        self.body = nn.Sequential(
            conv_bn_relu(1, narrow), nn.MaxPool2d(2),                      # [B, narrow, 14, 14]
            conv_bn_relu(narrow, wide), conv_bn_relu(wide, wide), nn.MaxPool2d(2),  # [B, wide, 7, 7]
            nn.Flatten(), nn.Linear(wide * side * side, config.feature_dim), nn.ReLU())  # [B, feature_dim]
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.feature_dim, config.num_classes))

    def features(self, images: Tensor) -> Tensor:
        """Penultimate activations ``[B, feature_dim]`` of images ``[B, 1, 28, 28]`` in [-1, 1]."""
        if images.shape[1:] != (1, self.config.image_size, self.config.image_size):
            raise ValueError(f"the classifier takes grey images [B, 1, {self.config.image_size}, "
                             f"{self.config.image_size}], not {list(images.shape)}; convert with "
                             "ldm_lab.metrics.features.to_classifier_input")
        return self.body(images)

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``[B, num_classes]``."""
        return self.head(self.features(images))


def classification_loss(model: FashionClassifier, batch: dict) -> Tensor:
    """Cross-entropy of a batch ``{"image": [B, 1, 28, 28], "label": [B]}``."""
    return F.cross_entropy(model(batch["image"]), batch["label"])


@torch.no_grad()
def accuracy(model: FashionClassifier, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy on uint8 ``images [N, 28, 28]`` (as ``load_fashion_mnist`` returns them)."""
    model.eval()
    device = model_device(model)
    correct = 0
    for start in range(0, len(images), batch_size):
        pixels = images[start:start + batch_size].to(device).float().div(127.5).sub(1).unsqueeze(1)
        correct += (model(pixels).argmax(-1).cpu() == labels[start:start + batch_size]).sum().item()
    return correct / len(images)


def load_classifier(device: torch.device | str = "cpu", folder: Path | None = None) -> FashionClassifier:
    """The shipped classifier (checksum-verified), in eval mode."""
    state, entry = load_checkpoint(CHECKPOINT_NAME, folder)
    model = FashionClassifier(config_from_fields(ClassifierConfig, entry.config))
    model.load_state_dict(state)
    return model.to(device).eval()
