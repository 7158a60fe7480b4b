"""Training objectives: the min-SNR-gamma weights against the Min-SNR repository's formulas."""

import pytest
import torch

from ldm_lab.diffusion import make_schedule, min_snr_weight

GAMMA = 5.0


def min_snr_repository_weight(snr: torch.Tensor, prediction: str, gamma: float) -> torch.Tensor:
    """Hang et al.'s code (guided_diffusion/gaussian_diffusion.py), re-derived: min(SNR, k) / SNR for eps
    ("min_snr_k"), min(SNR, k) / (SNR + 1) for v ("vmin_snr_k"), min(SNR, k) for x0; then 1 wherever SNR = 0."""
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    weight = {"eps": clipped / snr, "v": clipped / (snr + 1), "x0": clipped}[prediction]
    weight[snr == 0] = 1.0
    return weight


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_min_snr_weight_matches_the_min_snr_repository_including_snr_zero(prediction):
    snr = torch.tensor([0.0, 1e-6, 0.5, 1.0, 5.0, 20.0, 1e4], dtype=torch.float64)
    torch.testing.assert_close(min_snr_weight(snr, prediction, GAMMA),
                               min_snr_repository_weight(snr, prediction, GAMMA))
    assert min_snr_weight(snr[:1], prediction, GAMMA).item() == 1.0


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_the_last_timestep_of_a_zero_terminal_snr_schedule_keeps_weight_one(prediction):
    """There SNR is exactly 0; weight 0 would leave the first sampling step untrained."""
    snr = make_schedule("scaled_linear", zero_terminal_snr=True).snr
    assert snr[-1] == 0
    assert min_snr_weight(snr[-1:], prediction, GAMMA).item() == 1.0
