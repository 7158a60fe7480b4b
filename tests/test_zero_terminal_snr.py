"""Zero-terminal SNR (Lin et al. 2023) as a recipe option: a preset's schedule rescaled so that SNR_T = 0, trained
with v-prediction and min-SNR weighting and sampled by every sampler from t = T-1 (sigma at the 2**12 floor);
eps-prediction at SNR = 0 is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ldm_lab.diffusion import DiffusionLoss, SamplingSettings, make_schedule, sample
from ldm_lab.diffusion.losses import min_snr_weight
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.sampling import sampler_sigmas
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.presets import get_preset

SAMPLERS = ("ddim", "euler", "dpmpp_2m", "ddpm", "euler_ancestral")


@pytest.fixture(scope="module")
def model() -> LatentDiffusion:
    """The tiny pixel-space U-Net of lab-pixel, predicting v on a zero-terminal-SNR schedule."""
    torch.manual_seed(0)
    preset = replace(get_preset("lab-pixel"), prediction=Prediction.V, zero_terminal_snr=True)
    return LatentDiffusion(LatentDiffusionConfig(preset, snr_gamma=5.0))


def test_the_option_is_off_in_every_named_preset_and_on_in_the_model_built_with_it(model):
    assert not get_preset("lab-emoji").zero_terminal_snr
    assert not LatentDiffusion(LatentDiffusionConfig("lab-pixel")).schedule.has_zero_terminal_snr
    assert model.schedule.has_zero_terminal_snr and float(model.schedule.snr[-1]) == 0.0
    assert model.schedule.sigma_max == pytest.approx(2.0**12)  # sqrt((1 - 2**-24) / 2**-24)
    # linear's last few ab_t all fall below the floor: their sigmas tie, and the floor maps to t = T-1, not NaN
    assert float(model.schedule.timestep_at(model.schedule.sigma_max)) == model.schedule.num_train_timesteps - 1
    # ab_0 is kept (Lin et al. Alg. 1 shifts and scales sqrt(ab) so that only the end moves)
    plain = make_schedule("linear")
    assert torch.allclose(model.schedule.alphas_cumprod[0], plain.alphas_cumprod[0])


def test_eps_prediction_at_zero_terminal_snr_is_refused_with_the_fix():
    # A model (preset) and its training objective refuse it; ``sample`` itself still runs an exact eps oracle there
    # (the sigma floor keeps it defined), as tests/test_samplers.py does.
    with pytest.raises(ValueError, match="v-prediction"):
        replace(get_preset("lab-pixel"), zero_terminal_snr=True)  # lab-pixel predicts eps
    schedule = make_schedule("scaled_linear", zero_terminal_snr=True)
    with pytest.raises(ValueError, match="v-prediction"):
        DiffusionLoss(schedule, "eps")
    DiffusionLoss(schedule, "v", snr_gamma=5.0)  # v is accepted


def test_min_snr_weight_is_finite_and_one_at_zero_snr():
    snr = make_schedule("scaled_linear", zero_terminal_snr=True).snr.float()
    weight = min_snr_weight(snr, "v", 5.0)
    assert torch.isfinite(weight).all() and float(weight[-1]) == 1.0


def test_training_steps_at_zero_terminal_snr_give_finite_losses_and_move_the_weights(model):
    # A 4-step schedule, so that every batch holds t = T-1 (SNR = 0) several times.
    objective = DiffusionLoss(make_schedule("linear", 4, zero_terminal_snr=True), "v", snr_gamma=5.0)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(8, *model.latent_shape, generator=generator) * 2 - 1
    trained = replace(model.config)  # the fixture's model is shared: train a copy
    network = LatentDiffusion(trained)
    network.load_state_dict(model.state_dict())
    before = [p.detach().clone() for p in network.unet.parameters()]
    optimizer = torch.optim.Adam(network.unet.parameters(), lr=1e-3)
    for _ in range(3):
        loss = objective(network, x0, generator=generator)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in network.unet.parameters() if p.grad is not None)
        optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, network.unet.parameters()))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_starts_at_the_last_timestep_and_stays_finite(model, sampler):
    settings = SamplingSettings(sampler=sampler, steps=3, seed=0)
    sigmas = sampler_sigmas(settings.sampler_spec(), model.schedule, settings)
    assert float(sigmas[0]) == pytest.approx(2.0**12)  # trailing spacing: the first step is t = T-1, pure noise
    noise = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(1))
    images = sample(model.eval(), noise, settings, schedule=model.schedule, prediction="v", clip_x0=1.0,
                    progress=False)
    assert images.shape == noise.shape and torch.isfinite(images).all()
