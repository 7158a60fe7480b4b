"""The focus measure behind lab-sdxl's size-conditioning check."""

import pandas as pd
import pytest
import torch

from ldm_lab.metrics import blur, to_uint8
from ldm_lab.metrics.sharpness import (image_sharpness, laplacian_energy, latent_sharpness,
                                      sharpness_by_original_size, sharpness_by_size, sharpness_rises)


def checkerboard(n: int = 4, size: int = 32) -> torch.Tensor:
    """``n`` float images in [-1, 1] of 4-pixel squares: sharp edges everywhere."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    board = ((yy // 4 + xx // 4) % 2).float() * 2 - 1
    return board.expand(n, 3, size, size).clone()


def test_laplacian_energy_is_zero_on_flat_and_linear_images_and_falls_with_blur():
    flat = torch.full((2, 3, 16, 16), 128, dtype=torch.uint8)
    ramp = torch.arange(16, dtype=torch.uint8).mul(8).expand(2, 3, 16, 16).contiguous()
    assert torch.equal(laplacian_energy(flat), torch.zeros(2))
    assert laplacian_energy(ramp).abs().max() < 1e-9
    sharp = to_uint8(checkerboard())
    energies = [laplacian_energy(images).mean() for images in (sharp, blur(sharp, 0.8), blur(sharp, 2.0))]
    assert energies[0] > energies[1] > energies[2] > 0


def test_laplacian_energy_takes_metric_images_only():
    with pytest.raises(ValueError, match="to_uint8"):
        laplacian_energy(torch.zeros(1, 3, 8, 8))


def test_sharpness_by_size_rises_when_the_drawn_images_get_sharper_with_size():
    sigma = {16: 2.0, 32: 1.2, 64: 0.6, 128: 0.0}
    def draw(size):
        images = checkerboard(8) + 0.05 * torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        return blur(to_uint8(images), sigma[size[0]]).float() / 127.5 - 1
    table = sharpness_by_size(draw, [16, 32, 64, 128], num_resamples=100)
    assert list(table["original_size"]) == [16, 32, 64, 128]
    assert table["sharpness"].is_monotonic_increasing
    assert sharpness_rises(table) is True
    unpaired = table[["original_size", "sharpness", "sharpness_ci_low", "sharpness_ci_high"]]
    assert sharpness_rises(unpaired) is True
    assert sharpness_rises(unpaired.assign(sharpness=table["sharpness"][::-1].to_numpy(),
                                           sharpness_ci_low=table["sharpness_ci_low"][::-1].to_numpy(),
                                           sharpness_ci_high=table["sharpness_ci_high"][::-1].to_numpy())) is False
    reverse = {16: 128, 32: 64, 64: 32, 128: 16}      # the same images, sharpest at the smallest size
    blurring = sharpness_by_size(lambda size: draw((reverse[size[0]],) * 2), [16, 32, 64, 128], num_resamples=100)
    assert sharpness_rises(blurring) is False


def test_overlapping_end_intervals_are_undecided():
    table = pd.DataFrame({"original_size": [16, 128], "sharpness": [1.0, 1.2], "sharpness_ci_low": [0.8, 1.0],
                          "sharpness_ci_high": [1.2, 1.4], "num_samples": [8, 8]})
    assert sharpness_rises(table) is None


def test_paired_differences_see_a_small_effect_that_the_per_size_intervals_cannot():
    # images of very different sharpness (the spread between images); at each larger size every image has 1.5 %
    # more contrast, so 3 % more Laplacian energy (measured exactly, in floats, with latent_sharpness)
    base = torch.cat([blur(to_uint8(checkerboard(8)), sigma) for sigma in (0.3, 0.6, 0.9, 1.2)]).float() / 127.5 - 1
    contrast = {16: 1.0, 32: 1.015, 64: 1.015 ** 2}
    table = sharpness_by_size(lambda size: contrast[size[0]] * base, [16, 32, 64], num_resamples=200,
                              measure=latent_sharpness)
    first, last = table.iloc[0], table.iloc[-1]
    assert last["sharpness_ci_low"] < first["sharpness_ci_high"]                # per-size intervals overlap
    assert last["difference_ci_low"] > 0 and table.iloc[1]["step_ci_low"] > 0   # paired ones do not
    assert abs(last["difference"] / first["sharpness"] - (1.015 ** 4 - 1)) < 1e-5
    assert first["difference"] == 0
    assert sharpness_rises(table) is True
    assert sharpness_rises(table.drop(columns=[c for c in table if c.startswith(("difference", "step"))])) is None
    flipped = table.assign(difference=-table["difference"], difference_ci_low=-table["difference_ci_high"],
                           difference_ci_high=-table["difference_ci_low"])
    assert sharpness_rises(flipped) is False
    dip = table.assign(step_ci_low=[0.0, -0.5, 0.1], step_ci_high=[0.0, -0.1, 0.3])  # a step significantly down
    assert sharpness_rises(dip) is False


def test_latent_sharpness_is_zero_on_constant_latents_and_grows_with_detail():
    flat = torch.ones(2, 4, 8, 8)
    detail = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(latent_sharpness(flat), torch.zeros(2))
    assert (latent_sharpness(detail) > latent_sharpness(0.5 * detail)).all()
    assert torch.allclose(latent_sharpness(2 * detail), 4 * latent_sharpness(detail))


def test_real_images_group_by_their_original_side():
    sharp = to_uint8(checkerboard(6))
    images = torch.cat([blur(sharp[:3], 2.0), sharp[3:]])  # three "upscaled" originals, then three sharp ones
    images = images.float() / 127.5 - 1                    # back to [-1, 1], as the datasets give them
    with pytest.raises(ValueError, match="no image has an original side in \\[24, 64\\)"):
        sharpness_by_original_size(images, [16, 20, 23, 64, 90, 127], [16, 24, 64, 128], num_resamples=50)
    table = sharpness_by_original_size(images, [16, 20, 23, 64, 90, 127], [16, 24, 128], num_resamples=50)
    latents = torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * torch.tensor([1, 1, 1, 3, 3, 3.]).view(6, 1, 1, 1)
    by_latent = sharpness_by_original_size(latents, [16, 20, 23, 64, 90, 127], [16, 24, 128], num_resamples=50,
                                           measure=latent_sharpness)
    assert by_latent["sharpness"][1] > 5 * by_latent["sharpness"][0]
    assert list(table["original_side"]) == ["16-23", "24-127"]
    assert list(table["num_samples"]) == [3, 3]
    assert table["sharpness"][0] < table["sharpness"][1]
    assert table["sharpness_ci_high"][0] < table["sharpness_ci_low"][1]
