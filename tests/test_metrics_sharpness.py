"""The focus measure behind lab-sdxl's size-conditioning check."""

import pandas as pd
import pytest
import torch

from ldm_lab.metrics import blur, to_uint8
from ldm_lab.metrics.sharpness import (laplacian_energy, sharpness_by_original_size, sharpness_by_size,
                                      sharpness_rises)


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
    assert sharpness_rises(table.assign(sharpness=table["sharpness"][::-1].to_numpy(),
                                        sharpness_ci_low=table["sharpness_ci_low"][::-1].to_numpy(),
                                        sharpness_ci_high=table["sharpness_ci_high"][::-1].to_numpy())) is False


def test_overlapping_end_intervals_are_undecided():
    table = pd.DataFrame({"original_size": [16, 128], "sharpness": [1.0, 1.2], "sharpness_ci_low": [0.8, 1.0],
                          "sharpness_ci_high": [1.2, 1.4], "num_samples": [8, 8]})
    assert sharpness_rises(table) is None


def test_real_images_group_by_their_original_side():
    sharp = to_uint8(checkerboard(6))
    images = torch.cat([blur(sharp[:3], 2.0), sharp[3:]])  # three "upscaled" originals, then three sharp ones
    with pytest.raises(ValueError, match="no image has an original side in \\[24, 64\\)"):
        sharpness_by_original_size(images, [16, 20, 23, 64, 90, 127], [16, 24, 64, 128], num_resamples=50)
    table = sharpness_by_original_size(images, [16, 20, 23, 64, 90, 127], [16, 24, 128], num_resamples=50)
    assert list(table["original_side"]) == ["16-23", "24-127"]
    assert list(table["num_samples"]) == [3, 3]
    assert table["sharpness"][0] < table["sharpness"][1]
    assert table["sharpness_ci_high"][0] < table["sharpness_ci_low"][1]
