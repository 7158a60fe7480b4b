"""ADD's discriminator (§3.2, after StyleGAN-T / Projected GANs): a FROZEN pretrained feature network F and small
trainable heads D_k, one on the tokens of each of several layers F_k, each conditioned by projection (Miyato &
Koyama 2018) on the prompt's embedding c_text and optionally the real image's embedding c_img.

The paper's feature network is DINOv2 ViT-S. Those weights are not available here, so the stand-in is our shipped
lab-clip image tower (``ldm_lab.evaluation_models.lab_clip``): a small ViT (4 blocks, width 96, 16 patches + a
class token at 64x64) trained on emoji and shapes; c_text is lab-clip's text embedding of the caption and c_img
its image embedding (DINOv2's CLS embedding in the paper). Only the heads train; gradients still flow *through*
F into the images, which is how the adversarial term reaches the student.

Heads read tokens as 1-D sequences ``(b, width, tokens)`` as StyleGAN-T's do, with GroupNorm instead of its
batch statistics (a head then holds no running state that the student's pass would change) and without its
spectral normalisation (R1 regularises the heads). Each returns one logit per token, ``(b, tokens)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from torch import Tensor, nn

from ldm_lab.evaluation_models.lab_clip import load_lab_clip, tokenize


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The trainable heads of the ADD discriminator and what conditions them."""

    layers: tuple[int, ...] = (0, 1, 2, 3)   # feature-network blocks (0-based) whose tokens feed a head; ADD uses
                                             # several layers of DINOv2 ViT-S, lab-clip's tower has 4 blocks
    head_width: int = 64                     # channels inside each head (and of its projection embedding)
    kernel_size: int = 3                     # token-axis kernel of each head's residual conv
    text_condition: bool = True              # project on lab-clip's text embedding of the caption (Tab. 1b)
    image_condition: bool = False            # also project on lab-clip's embedding of the real image x0 (Tab. 1b)
    augment: bool = True                     # DiffAugment (colour, translation, cutout) on every image before F,
                                             # real and generated, as StyleGAN-T's discriminator (distill.augment)

    def __post_init__(self) -> None:
        if len(self.layers) < 1 or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers must name distinct feature-network blocks, got {self.layers}; ADD puts heads "
                             "on several, e.g. (0, 1, 2, 3) for lab-clip's four blocks.")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the token sequence keeps its length), got {self.kernel_size}")


class FeatureNetwork(nn.Module):
    """The frozen ViT image tower F: token features of the chosen blocks, ``[(b, tokens, width)]``, class token
    first. Always in eval mode; no parameter ever trains, but inputs get gradients."""

    def __init__(self, clip: CLIP, layers: tuple[int, ...]) -> None:
        super().__init__()
        depth = len(clip.visual.transformer.resblocks)
        if max(layers) >= depth or min(layers) < 0:
            raise ValueError(f"the feature network has {depth} blocks (0..{depth - 1}); layers {layers} name others. "
                             f"Choose DiscriminatorConfig(layers=...) within 0..{depth - 1}.")
        self.clip, self.layers = clip.eval().requires_grad_(False), tuple(layers)

    @property
    def width(self) -> int:
        return self.clip.visual.transformer.width

    @property
    def image_size(self) -> int:
        return self.clip.visual.image_size[0]

    def resize(self, images: Tensor) -> Tensor:
        side = self.image_size
        if images.shape[-2:] == (side, side):
            return images
        return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """Images ``(b, 3, h, w)`` in [-1, 1] -> one ``(b, 1 + patches, width)`` token tensor per chosen block."""
        out = self.clip.visual.forward_intermediates(self.resize(images), indices=list(self.layers), stop_early=True,
                                                     intermediates_only=True, output_fmt="NLC",
                                                     output_extra_tokens=True)
        return [torch.cat([cls, patches], dim=1)
                for cls, patches in zip(out["image_intermediates_prefix"], out["image_intermediates"])]

    @torch.no_grad()
    def text_embedding(self, captions: list[str]) -> Tensor:
        """c_text ``(b, embed_dim)``: unit-norm lab-clip text embeddings."""
        device = self.clip.logit_scale.device
        return self.clip.encode_text(tokenize(captions, self.clip.context_length).to(device), normalize=True)

    @torch.no_grad()
    def image_embedding(self, images: Tensor) -> Tensor:
        """c_img ``(b, embed_dim)``: unit-norm lab-clip image embeddings (the paper: DINOv2's CLS embedding)."""
        return self.clip.encode_image(self.resize(images), normalize=True)

    def train(self, mode: bool = True) -> FeatureNetwork:
        return super().train(False)


def conv_block(channels_in: int, channels_out: int, kernel_size: int) -> nn.Sequential:
    """conv1d over tokens -> GroupNorm -> LeakyReLU(0.2)."""
    return nn.Sequential(nn.Conv1d(channels_in, channels_out, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(min(8, channels_out), channels_out), nn.LeakyReLU(0.2))


class ProjectionHead(nn.Module):
    """D_k: token features -> logits ``(b, tokens)``, Miyato & Koyama's projection discriminator (their eq. 3):
    D(x, c) = psi(phi(x)) + <embed(c), phi(x)>, per token; without a condition, psi(phi(x)) alone."""

    def __init__(self, width: int, config: DiscriminatorConfig, condition_dim: int) -> None:
        super().__init__()
        hidden = config.head_width
        self.stem = conv_block(width, hidden, 1)
        self.residual = conv_block(hidden, hidden, config.kernel_size)
        self.unconditional = nn.Conv1d(hidden, 1, 1)                            # psi
        self.embed = nn.Linear(condition_dim, hidden) if condition_dim else None  # c -> V c

    def forward(self, tokens: Tensor, condition: Tensor | None) -> Tensor:
        h = self.stem(tokens.transpose(1, 2))                # (b, width, n) -> phi: (b, hidden, n)
        h = (h + self.residual(h)) / math.sqrt(2)
        logits = self.unconditional(h).squeeze(1)            # (b, n)
        if self.embed is None:
            return logits
        projection = torch.einsum("bcn,bc->bn", h, self.embed(condition)) / math.sqrt(h.shape[1])
        return logits + projection


class DiscriminatorHeads(nn.Module):
    """The trainable part of the discriminator: one :class:`ProjectionHead` per feature layer."""

    def __init__(self, config: DiscriminatorConfig, width: int, embed_dim: int) -> None:
        super().__init__()
        self.config = config
        condition_dim = embed_dim * (int(config.text_condition) + int(config.image_condition))
        self.heads = nn.ModuleList([ProjectionHead(width, config, condition_dim) for _ in config.layers])

    def forward(self, features: list[Tensor], condition: Tensor | None) -> list[Tensor]:
        """Per-layer token features -> per-layer logits ``[(b, tokens)]``."""
        if len(features) != len(self.heads):
            raise ValueError(f"got features of {len(features)} layers for {len(self.heads)} heads")
        return [head(f, condition) for head, f in zip(self.heads, features)]


def discriminator_condition(features: FeatureNetwork, config: DiscriminatorConfig, captions: list[str],
                            real_images: Tensor) -> Tensor | None:
    """c = [c_text, c_img] as the config asks (no gradient: both come from the frozen network), or None."""
    parts = []
    if config.text_condition:
        parts.append(features.text_embedding(list(captions)))
    if config.image_condition:
        parts.append(features.image_embedding(real_images))
    return torch.cat(parts, dim=1) if parts else None


def lab_clip_feature_network(layers: tuple[int, ...], device: torch.device | str = "cpu") -> FeatureNetwork:
    """The shipped lab-clip's image tower (the DINOv2 ViT-S stand-in), loaded as the metrics code loads it."""
    return FeatureNetwork(load_lab_clip(device), layers)


def build_heads(features: FeatureNetwork, config: DiscriminatorConfig) -> DiscriminatorHeads:
    """Fresh heads sized for ``features``, on its device."""
    heads = DiscriminatorHeads(config, features.width, features.clip.text_projection.shape[1])
    return heads.to(features.clip.logit_scale.device)
