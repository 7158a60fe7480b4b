"""First stages train on random windows (ldm_lab.tasks.autoencoder.random_crops, AutoencoderTarget.crop): each
window is a crop x crop piece of its own image, and only training batches are cropped."""

import pytest
import torch

from ldm_lab.presets.lab import LAB_AUTOENCODER
from ldm_lab.tasks import get_target
from ldm_lab.tasks.autoencoder import AutoencoderGAN, AutoencoderLossConfig, AutoencoderTask, random_crops

NO_PERCEPTUAL = AutoencoderLossConfig(perceptual_weight=0.0)  # no lab-clip to load: the crops are what we test


def window_offsets(image, crop) -> list[tuple[int, int]]:
    """Every (top, left) at which ``crop`` (c, s, s) equals a window of ``image`` (c, h, w)."""
    size = crop.shape[-1]
    height, width = image.shape[-2:]
    return [(t, l) for t in range(height - size + 1) for l in range(width - size + 1)
            if torch.equal(image[:, t:t + size, l:l + size], crop)]


def test_crops_have_the_crop_size_and_are_windows_of_their_own_images():
    torch.manual_seed(0)
    images = torch.randn(6, 3, 12, 10)  # not square: the window fits in both sides
    crops = random_crops(images, 4)
    assert crops.shape == (6, 3, 4, 4)
    offsets = [window_offsets(image, crop) for image, crop in zip(images, crops)]
    assert all(len(found) == 1 for found in offsets)  # random values: exactly one window matches
    assert len({found[0] for found in offsets}) > 1   # each image draws its own window


def test_crops_cover_every_offset_including_the_far_edges():
    torch.manual_seed(0)
    images = torch.arange(5 * 5.0).view(1, 1, 5, 5).expand(400, 1, 5, 5)
    corners = {(int(c[0, 0, 0]) // 5, int(c[0, 0, 0]) % 5) for c in random_crops(images, 3)}
    assert corners == {(t, l) for t in range(3) for l in range(3)}


def test_a_crop_as_large_as_the_image_is_the_image_and_a_larger_one_says_the_limit():
    images = torch.randn(2, 3, 8, 8)
    assert torch.equal(random_crops(images, 8), images)
    with pytest.raises(ValueError, match=r"crop 9 is larger than the 8x8 training images; crop at most 8"):
        random_crops(images, 9)
    with pytest.raises(ValueError, match="crop at most 6"):
        random_crops(torch.randn(2, 3, 6, 8), 7)


def test_autoencoder_task_trains_on_crops_and_evaluates_whole_images():
    torch.manual_seed(0)
    model = AutoencoderGAN(LAB_AUTOENCODER, NO_PERCEPTUAL)
    seen = []
    model.autoencoder.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    task = AutoencoderTask(images, crop=32)
    loss = task.loss(model.train(), {"image": images})
    assert torch.isfinite(loss) and seen[-1].shape == (2, 3, 32, 32)
    assert all(len(window_offsets(image, crop)) == 1 for image, crop in zip(images, seen[-1]))
    with torch.no_grad():
        task.loss(model.eval(), {"image": images})
    assert seen[-1].shape == (2, 3, 64, 64) and torch.equal(seen[-1], images)
    AutoencoderTask(images).loss(model.train(), {"image": images})  # no crop: whole images in training too
    assert seen[-1].shape == (2, 3, 64, 64)


def test_lab_emojis_first_stage_trains_on_32_px_windows_and_the_ablations_on_whole_images():
    assert get_target("lab-autoencoder").crop == 32 == get_target("lab-autoencoder").build_task().crop
    assert get_target("lab-kl-f4").crop is None
