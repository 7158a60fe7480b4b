"""Schedules, timestep spacing, sigma views, parameterisations, denoiser scalings and losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler
from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr as diffusers_rescale

from ldm_lab.diffusion import Denoiser, DiffusionLoss, GaussianOracle, RectifiedFlowLoss, make_schedule
from ldm_lab.diffusion.discretisation import karras_schedule_sigmas, karras_sigmas, spaced_timesteps
from ldm_lab.diffusion.losses import min_snr_weight
from ldm_lab.diffusion.parameterisation import (add_noise, eps_to_x0, prediction_to_eps, prediction_to_x0,
                                                training_target, v_to_eps, v_to_x0, velocity, x0_to_eps)
from ldm_lab.diffusion.schedules import rescale_zero_terminal_snr


@pytest.mark.parametrize("ours,theirs", [
    (dict(name="scaled_linear"), dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    (dict(name="linear"), dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)),
    (dict(name="cosine"), dict(beta_schedule="squaredcos_cap_v2"))])
def test_beta_schedules_match_diffusers(ours, theirs):
    expected = DDPMScheduler(**theirs).betas.double()
    torch.testing.assert_close(make_schedule(**ours).betas, expected, rtol=1e-5, atol=1e-7)


def test_ldm_linear_is_linear_in_sqrt_beta():
    betas = make_schedule("scaled_linear").betas
    assert betas[0].item() == pytest.approx(0.00085) and betas[-1].item() == pytest.approx(0.012)
    second_difference = betas.sqrt().diff().diff().abs().max().item()
    assert second_difference < 1e-12 and betas.diff().diff().abs().max().item() > 1e-10


def test_zero_terminal_snr_rescaling():
    betas = make_schedule("scaled_linear").betas
    rescaled = make_schedule("scaled_linear", zero_terminal_snr=True)
    torch.testing.assert_close(rescale_zero_terminal_snr(betas), diffusers_rescale(betas.clone()))
    assert rescaled.alphas_cumprod[-1].item() == pytest.approx(0.0, abs=1e-12)
    assert rescaled.snr[-1].item() == pytest.approx(0.0, abs=1e-12)
    assert rescaled.alphas_cumprod[0].item() == pytest.approx(make_schedule("scaled_linear").alphas_cumprod[0].item())
    assert rescaled.sigma_max == pytest.approx(2.0**12, rel=1e-6)   # floored at ab = 2**-24, as diffusers


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("steps", [1, 3, 7, 10, 28, 50, 999])
def test_timestep_spacing_matches_diffusers(spacing, steps):
    offset = 1 if spacing == "leading" else 0
    scheduler = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
    scheduler.set_timesteps(steps)
    assert spaced_timesteps(1000, steps, spacing, offset).tolist() == scheduler.timesteps.tolist()


def test_spacings_differ_where_lin_et_al_say():
    """Table 2 of Lin et al. 2023: only linspace and trailing start at T-1; leading never reaches it."""
    assert spaced_timesteps(1000, 10, "trailing")[0] == 999 and spaced_timesteps(1000, 10, "linspace")[0] == 999
    assert spaced_timesteps(1000, 10, "leading", steps_offset=1).tolist()[:2] == [901, 801]
    with pytest.raises(ValueError, match="linspace, leading, trailing"):
        spaced_timesteps(1000, 10, "uniform")


def test_karras_sigmas_match_diffusers_and_eq_5():
    schedule = make_schedule("scaled_linear")
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       use_karras_sigmas=True)
    scheduler.set_timesteps(12)
    torch.testing.assert_close(karras_schedule_sigmas(schedule, 12).float(), scheduler.sigmas, rtol=1e-5, atol=1e-6)
    sigmas = karras_sigmas(0.1, 10.0, 5, rho=7.0)
    assert sigmas[0].item() == pytest.approx(10.0) and sigmas[-1].item() == pytest.approx(0.1)
    middle = ((10.0 ** (1 / 7) + 0.1 ** (1 / 7)) / 2) ** 7
    assert sigmas[2].item() == pytest.approx(middle)


def test_sigma_view_and_timestep_interpolation():
    schedule = make_schedule("scaled_linear")
    ab = schedule.alphas_cumprod
    torch.testing.assert_close(schedule.sigmas, ((1 - ab) / ab).sqrt())
    torch.testing.assert_close(schedule.snr, schedule.sigmas ** -2)
    integers = torch.tensor([0, 1, 17, 500, 998, 999])
    torch.testing.assert_close(schedule.timestep_at(schedule.sigma_at(integers)), integers.double())
    sigmas = torch.tensor([0.05, 0.3, 1.0, 4.2, 14.0])
    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    log_table = np.log(((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod).numpy() ** 0.5)
    expected = np.array([scheduler._sigma_to_t(s, log_table) for s in sigmas.numpy()]).squeeze()
    np.testing.assert_allclose(schedule.timestep_at(sigmas).numpy(), expected, rtol=1e-4)
    torch.testing.assert_close(schedule.sigma_at(schedule.timestep_at(sigmas)), sigmas.double())


def test_unknown_schedule_lists_the_choices():
    with pytest.raises(ValueError, match="scaled_linear, linear, cosine"):
        make_schedule("sqrt_linear")


def random_state(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    alpha_bar = torch.rand(4, 1, 1, 1, generator=g) * 0.98 + 0.01
    return x0, eps, alpha_bar, add_noise(x0, eps, alpha_bar)


def test_parameterisation_conversions_are_consistent():
    x0, eps, ab, x_t = random_state()
    v = velocity(x0, eps, ab)
    torch.testing.assert_close(eps_to_x0(eps, x_t, ab), x0)
    torch.testing.assert_close(x0_to_eps(x0, x_t, ab), eps)
    torch.testing.assert_close(v_to_x0(v, x_t, ab), x0)
    torch.testing.assert_close(v_to_eps(v, x_t, ab), eps)
    for prediction, output in {"eps": eps, "v": v, "x0": x0}.items():
        torch.testing.assert_close(prediction_to_x0(output, prediction, x_t, ab), x0)
        torch.testing.assert_close(prediction_to_eps(output, prediction, x_t, ab), eps)
        torch.testing.assert_close(training_target(prediction, x0, eps, ab), output)


def test_velocity_matches_diffusers():
    x0, eps, _, _ = random_state()
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    t = torch.tensor([0, 250, 600, 999])
    ab = make_schedule("scaled_linear").alpha_bar_at(t).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(velocity(x0, eps, ab), scheduler.get_velocity(x0, eps, t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_denoiser_recovers_x0_from_an_exact_prediction(prediction):
    """D(x; sigma) = c_skip x + c_out F(c_in x, t(sigma)) returns x0 when F outputs the true target."""
    schedule = make_schedule("scaled_linear")
    x0, eps, _, _ = random_state()
    t = 321
    sigma = float(schedule.sigma_at(t))
    ab = schedule.alphas_cumprod[t].float()
    seen = {}

    def exact_model(x_t, timesteps):
        seen["x_t"], seen["t"] = x_t, timesteps
        return training_target(prediction, x0, eps, ab)

    denoised = Denoiser(exact_model, schedule, prediction)(x0 + sigma * eps, sigma)
    torch.testing.assert_close(denoised, x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(seen["x_t"], add_noise(x0, eps, ab), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen["t"], torch.full((4,), float(t)))


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_min_snr_weight_gives_x0_space_weight_min_snr_gamma(prediction):
    """Hang et al. 2023: whatever the target, the weighted loss equals min(SNR, gamma) * ||x0_hat - x0||^2."""
    x0, eps, ab, x_t = random_state(1)
    output = training_target(prediction, x0, eps, ab) + 0.1 * torch.randn_like(x0)
    x0_error = (prediction_to_x0(output, prediction, x_t, ab) - x0).pow(2).flatten(1).mean(1)
    target_error = (output - training_target(prediction, x0, eps, ab)).pow(2).flatten(1).mean(1)
    snr = (ab / (1 - ab)).flatten()
    weighted = min_snr_weight(snr, prediction, gamma=5.0) * target_error
    torch.testing.assert_close(weighted, snr.clamp(max=5.0) * x0_error)


def test_min_snr_weight_is_finite_at_zero_snr():
    weights = min_snr_weight(torch.tensor([0.0, 1.0, 100.0]), "eps", 5.0)
    torch.testing.assert_close(weights, torch.tensor([1.0, 1.0, 0.05]))


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_diffusion_loss_prefers_the_exact_predictor(prediction):
    schedule = make_schedule("scaled_linear")
    x0 = 0.5 + 0.25 * torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    loss = DiffusionLoss(schedule, prediction, snr_gamma=5.0)
    oracle = GaussianOracle(schedule, 0.5, 0.25, prediction)
    exact = loss(oracle, x0, generator=torch.Generator().manual_seed(1))
    zero = loss(lambda x, t: torch.zeros_like(x), x0, generator=torch.Generator().manual_seed(1))
    assert exact < 0.5 * zero
    assert loss(oracle, x0, generator=torch.Generator().manual_seed(1)) == exact   # seeded: reproducible


def test_rectified_flow_loss_vanishes_for_the_true_velocity():
    """With x0 known to be the constant c, the velocity noise - x0 = (x_t - c) / t is exactly predictable."""
    c = 0.3
    x0 = torch.full((16, 2, 4, 4), c)
    loss = RectifiedFlowLoss()
    true_velocity = lambda x_t, timesteps: (x_t - c) / (timesteps / 1000).reshape(-1, 1, 1, 1)  # noqa: E731
    assert loss(true_velocity, x0, generator=torch.Generator().manual_seed(0)).item() < 1e-8
    assert loss(lambda x_t, t: x_t, x0, generator=torch.Generator().manual_seed(0)).item() > 0.1
