"""PSNR and SSIM against hand-computed values and their defining properties."""

import math

import numpy as np
import pytest
import torch

from ldm_lab.metrics.reconstruction import SSIM_K1, SSIM_K2, psnr, ssim


def test_psnr_known_values():
    zeros = torch.zeros(2, 3, 8, 8)
    offset = zeros + torch.tensor([0.1, 0.2]).view(2, 1, 1, 1)      # MSE 0.01 and 0.04 on a range of 2
    expected = [10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.04)]  # 26.02 dB, 20.00 dB
    assert psnr(zeros, offset).tolist() == pytest.approx(expected, abs=1e-4)
    assert psnr(zeros * 255, offset * 255, data_range=510).tolist() == pytest.approx(expected, abs=1e-4)
    assert torch.isinf(psnr(offset, offset)).all()


def test_ssim_of_constant_images_is_the_luminance_term():
    # No variance anywhere: SSIM = (2ab + C1) / (a^2 + b^2 + C1) exactly (contrast/structure terms are C2/C2).
    a, b, data_range = 0.2, -0.4, 2.0
    c1 = (SSIM_K1 * data_range) ** 2
    x, y = torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b)
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_ssim_of_one_window_matches_the_formula_by_hand():
    # An 11x11 image pair holds exactly one window: compute Wang et al.'s eq. 13 with numpy, centred moments.
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (11, 11))
    y = 0.6 * x + 0.3 * rng.normal(size=(11, 11))
    line = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(line, line) / np.outer(line, line).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy, cxy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum(), (w * (x - mx) * (y - my)).sum()
    c1, c2 = (SSIM_K1 * 2) ** 2, (SSIM_K2 * 2) ** 2
    by_hand = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    as_tensor = lambda a: torch.from_numpy(a).float()[None, None]  # noqa: E731
    assert ssim(as_tensor(x), as_tensor(y)).item() == pytest.approx(by_hand, abs=1e-5)


def test_ssim_properties():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    noisy = [(x + s * torch.randn_like(x)).clamp(-1, 1) for s in (0.05, 0.2, 0.5)]
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    assert ssim(x, noisy[1]).tolist() == pytest.approx(ssim(noisy[1], x).tolist(), abs=1e-6)  # symmetric
    scores = [ssim(x, n).mean().item() for n in noisy]
    assert scores[0] > scores[1] > scores[2]
    with pytest.raises(ValueError, match="window"):
        ssim(x[..., :8, :8], x[..., :8, :8])


def test_ssim_matches_scikit_image_when_installed():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (40, 48))
    y = np.clip(x + 0.1 * rng.normal(size=x.shape), 0, 1)
    reference = metrics.structural_similarity(x, y, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False)
    ours = ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None], data_range=1.0).item()
    assert ours == pytest.approx(reference, abs=1e-5)
