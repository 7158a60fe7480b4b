"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) in front of the discriminator's feature network.

ADD uses StyleGAN-T's discriminator (§3.2), and StyleGAN-T's ``ProjectedDiscriminator`` augments every image it
judges, real and generated alike, with DiffAugment's "color, translation, cutout" before its frozen ViT. Each
operation is drawn per image and is differentiable in the pixels, so the adversarial gradient still reaches the
student; what it no longer rewards is a pattern that fools the frozen network only at fixed pixel positions and
colours (without it, lab-emoji's students learned textured blobs that lab-clip's tower scored as real).

Images are ``(b, c, h, w)`` in [-1, 1]; the magnitudes are DiffAugment's defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TRANSLATION_RATIO = 0.125   # shift up to this fraction of each side, the vacated border set to 0 (DiffAugment)
CUTOUT_RATIO = 0.5          # side of the zeroed square, as a fraction of the image's side (DiffAugment)


def _uniform(images: Tensor, generator: torch.Generator | None) -> Tensor:
    """``(b, 1, 1, 1)`` uniform in [0, 1): one draw per image (on the CPU generator, then moved)."""
    return torch.rand(len(images), 1, 1, 1, generator=generator).to(images)


def random_colour(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Brightness + [-0.5, 0.5), saturation x [0, 2), contrast x [0.5, 1.5), each per image."""
    x = images + (_uniform(images, generator) - 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (2 * _uniform(images, generator)) + grey
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(images, generator) + 0.5) + mean


def random_translation(images: Tensor, ratio: float = TRANSLATION_RATIO,
                       generator: torch.Generator | None = None) -> Tensor:
    """Each image shifted by whole pixels, up to ``ratio`` of its side each way; the border it leaves is 0."""
    height, width = images.shape[-2:]
    pad_y, pad_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    padded = F.pad(images, (pad_x, pad_x, pad_y, pad_y))
    tops = torch.randint(0, 2 * pad_y + 1, (len(images),), generator=generator).tolist()
    lefts = torch.randint(0, 2 * pad_x + 1, (len(images),), generator=generator).tolist()
    return torch.stack([image[:, top:top + height, left:left + width]
                        for image, top, left in zip(padded, tops, lefts)])


def random_cutout(images: Tensor, ratio: float = CUTOUT_RATIO, generator: torch.Generator | None = None) -> Tensor:
    """Each image with a square of ``ratio`` of its side set to 0, centred anywhere (clipped at the border)."""
    height, width = images.shape[-2:]
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    centre_y = torch.randint(0, height + (1 - size_y % 2), (len(images), 1, 1), generator=generator)
    centre_x = torch.randint(0, width + (1 - size_x % 2), (len(images), 1, 1), generator=generator)
    rows = torch.arange(height).view(1, -1, 1)
    columns = torch.arange(width).view(1, 1, -1)
    inside = ((rows - centre_y).abs() * 2 < size_y) & ((columns - centre_x).abs() * 2 < size_x)  # (b, h, w)
    return images * (~inside).unsqueeze(1).to(images)


def diff_augment(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """DiffAugment's "color, translation, cutout", in that order (StyleGAN-T's discriminator input)."""
    return random_cutout(random_translation(random_colour(images, generator), generator=generator),
                         generator=generator)
