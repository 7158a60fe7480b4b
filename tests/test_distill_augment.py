"""DiffAugment in front of ADD's discriminator: each operation per image, differentiable, the sizes DiffAugment
uses; and the ADD discriminator judges augmented images only when its config asks."""

from __future__ import annotations

from dataclasses import replace

import torch

from ldm_lab.distill.augment import diff_augment, random_colour, random_cutout, random_translation

from test_distill import TINY_DISCRIMINATOR, tiny_batch, tiny_models


def ones(n: int = 16, side: int = 32) -> torch.Tensor:
    return torch.ones(n, 3, side, side)


def test_translation_shifts_each_image_by_at_most_an_eighth_and_leaves_a_zero_border():
    shifted = random_translation(ones(), generator=torch.Generator().manual_seed(0))
    kept = (shifted == 1).flatten(1).float().mean(dim=1)                   # per image
    assert shifted.shape == ones().shape and set(shifted.unique().tolist()) <= {0.0, 1.0}
    assert kept.min() >= (1 - 4 / 32) ** 2 - 1e-6                          # at most 4 of 32 rows and columns
    assert kept.unique().numel() > 1                                        # each image its own shift


def test_cutout_zeroes_one_square_of_half_the_side_at_most():
    cut = random_cutout(ones(), generator=torch.Generator().manual_seed(0))
    zeroed = (cut == 0).flatten(1).float().mean(dim=1)
    assert zeroed.max() <= 0.25 + 1e-6 and zeroed.min() > 0
    assert zeroed.unique().numel() > 1                                      # squares clipped differently


def test_colour_moves_brightness_saturation_and_contrast_per_image_and_keeps_grey_grey():
    grey = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1)).expand(8, 3, 16, 16) * 2 - 1
    coloured = random_colour(grey, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(coloured[:, 0], coloured[:, 1]) and torch.allclose(coloured[:, 1], coloured[:, 2])
    same = grey[:1].expand(8, 3, 16, 16)
    assert random_colour(same).mean(dim=(1, 2, 3)).unique().numel() == 8   # one draw per image


def test_the_whole_augmentation_passes_gradients_to_the_pixels():
    images = (torch.rand(4, 3, 32, 32) * 2 - 1).requires_grad_(True)
    diff_augment(images, torch.Generator().manual_seed(0)).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert diff_augment(images.detach()).shape == images.shape


def test_the_discriminator_judges_augmented_images_only_when_asked():
    images = tiny_batch()["image"]
    plain = tiny_models(replace(TINY_DISCRIMINATOR, augment=False))
    assert all(torch.equal(a, b) for a, b in zip(plain.judged(images), plain.features(images)))
    augmented = tiny_models(replace(TINY_DISCRIMINATOR, augment=True))
    assert not all(torch.equal(a, b) for a, b in zip(augmented.judged(images), augmented.features(images)))
