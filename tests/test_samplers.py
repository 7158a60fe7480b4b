"""Samplers: parity with diffusers' schedulers, the Gaussian oracle, and determinism.

Parity: the same model_fn (a fixed random channel-mixing map whose gain and bias depend on t), the same initial
noise and, for stochastic samplers, the same generator; the final samples must agree to 1e-4 relative
(||ours - theirs|| / ||theirs||). Step counts 4, 10 and 28 make diffusers' fractional linspace timesteps
(Euler-family) integers, which is how we space them for every sampler.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, HeunDiscreteScheduler)

from ldm_lab.diffusion import SAMPLERS, GaussianOracle, SamplingSettings, make_schedule, sample, spaced_timesteps
from ldm_lab.diffusion.oracle import gaussian_fit_error

SHAPE = (2, 3, 8, 8)
STEP_COUNTS = (4, 10, 28)
SPACINGS = ("linspace", "leading", "trailing")
PREDICTIONS = {"eps": "epsilon", "v": "v_prediction"}
SD_BETAS = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)


def toy_model(time_dependent: bool = True):
    """A deterministic stand-in for a network: out = gain(t) * W x + bias(t)."""
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(3, 3, generator=g) * 0.4 + torch.eye(3) * 0.5
    bias = torch.randn(1, 3, 1, 1, generator=g) * 0.2

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tau = torch.as_tensor(t, dtype=torch.float32).reshape(-1, 1, 1, 1) / 1000
        tau = tau if time_dependent else torch.full_like(tau, 0.3)
        mixed = torch.einsum("oc,bchw->bohw", weight, x)
        return (1 + 0.5 * torch.cos(3 * tau)) * mixed + bias * torch.sin(2 * tau + 0.5)

    return model_fn


def initial_noise() -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))


def run_diffusers(scheduler, model_fn, noise, *, timesteps=None, **step_kwargs) -> torch.Tensor:
    """The standard diffusers denoising loop."""
    if timesteps is None:
        scheduler.set_timesteps(step_kwargs.pop("steps"))
    else:
        step_kwargs.pop("steps")
        scheduler.set_timesteps(timesteps=[int(t) for t in timesteps])
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.step(model_fn(scheduler.scale_model_input(x, t), t), t, x, **step_kwargs).prev_sample
    return x


def run_ours(sampler, model_fn, noise, *, steps, spacing, prediction, steps_offset=0, seed=None):
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return sample(model_fn, noise,
                  SamplingSettings(sampler=sampler, steps=steps, timestep_spacing=spacing, steps_offset=steps_offset),
                  schedule=make_schedule("scaled_linear"), prediction=prediction, generator=generator, progress=False)


def euler_family_noise(noise, scheduler) -> torch.Tensor:
    """diffusers' Euler-family schedulers start linspace/trailing runs from sigma_max * noise instead of
    sqrt(sigma_max^2 + 1) * noise (= the model's x_T); hand our sampler the equivalent x_T."""
    sigma = float(scheduler.sigmas.max())
    return noise * scheduler.init_noise_sigma / math.sqrt(sigma**2 + 1)


def assert_parity(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    relative = ((ours - theirs).norm() / theirs.norm()).item()
    assert relative < 1e-4, f"relative difference {relative:.2e} to diffusers"


parity_grid = pytest.mark.parametrize(
    "steps,spacing,prediction",
    [(n, s, p) for n in STEP_COUNTS for s in SPACINGS for p in PREDICTIONS])


@parity_grid
def test_ddpm_matches_diffusers(steps, spacing, prediction):
    model_fn, noise = toy_model(), initial_noise()
    scheduler = DDPMScheduler(**SD_BETAS, clip_sample=False, prediction_type=PREDICTIONS[prediction],
                              timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0)
    theirs = run_diffusers(scheduler, model_fn, noise, steps=steps, generator=torch.Generator().manual_seed(7))
    ours = run_ours("ddpm", model_fn, noise, steps=steps, spacing=spacing, prediction=prediction,
                    steps_offset=scheduler.config.steps_offset, seed=7)
    assert_parity(ours, theirs)


@parity_grid
def test_ddim_matches_diffusers(steps, spacing, prediction):
    """Our "ddim" ends as LDM's DDIMSampler and SD's scheduler config (set_alpha_to_one=False): its last step lands
    on ab_0 and returns that x_t. DDIMScheduler steps from t to t - T // steps, which is the next timestep it
    visits only for leading spacing and for trailing when steps divides T; otherwise we compare with
    EulerDiscreteScheduler on the same integer timesteps and final_sigmas_type="sigma_min" — DDIM (eta = 0) is
    Euler in sigma space (Song et al. 2021, §4.3); Euler returns sigma-space x, x_t * sqrt(sigma_0^2 + 1)."""
    model_fn, noise = toy_model(), initial_noise()
    ours = run_ours("ddim", model_fn, noise, steps=steps, spacing=spacing, prediction=prediction)
    if spacing == "leading" or (spacing == "trailing" and 1000 % steps == 0):
        scheduler = DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=False,
                                  prediction_type=PREDICTIONS[prediction], timestep_spacing=spacing)
        theirs = run_diffusers(scheduler, model_fn, noise, steps=steps, eta=0.0)
    else:
        scheduler = EulerDiscreteScheduler(**SD_BETAS, prediction_type=PREDICTIONS[prediction],
                                           timestep_spacing="leading",   # leading: init sigma sqrt(s^2 + 1)
                                           final_sigmas_type="sigma_min")
        theirs = run_diffusers(scheduler, model_fn, noise, steps=steps,
                               timesteps=spaced_timesteps(1000, steps, spacing))
        theirs = theirs / math.sqrt(make_schedule("scaled_linear").sigma_min ** 2 + 1)
    assert_parity(ours, theirs)


@pytest.mark.parametrize("steps,spacing", [(10, "leading"), (50, "leading"), (10, "trailing"), (50, "trailing")])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddim_ends_at_alpha_bar_0_or_at_the_clean_sample(steps, spacing, prediction):
    """Both ends of DDIM, against DDIMScheduler: final_sigma="sigma_min" is set_alpha_to_one=False (SD's config,
    LDM's DDIMSampler; our "ddim" default), "zero" is set_alpha_to_one=True. They differ by ~0.9 % relative."""
    model_fn, noise = toy_model(), initial_noise()
    results = {}
    for final, alpha_to_one in (("sigma_min", False), ("zero", True)):
        scheduler = DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=alpha_to_one,
                                  prediction_type=PREDICTIONS[prediction], timestep_spacing=spacing,
                                  steps_offset=1 if spacing == "leading" else 0)
        theirs = run_diffusers(scheduler, model_fn, noise, steps=steps, eta=0.0)
        settings = SamplingSettings(sampler="ddim", steps=steps, timestep_spacing=spacing,
                                    steps_offset=scheduler.config.steps_offset, final_sigma=final)
        ours = sample(model_fn, noise, settings, prediction=prediction, progress=False)
        assert_parity(ours, theirs)
        results[final] = ours
    assert torch.equal(results["sigma_min"], run_ours("ddim", model_fn, noise, steps=steps, spacing=spacing,
                                                      prediction=prediction,
                                                      steps_offset=1 if spacing == "leading" else 0))
    gap = ((results["sigma_min"] - results["zero"]).norm() / results["zero"].norm()).item()
    assert gap > 1e-3


@pytest.mark.parametrize("name,scheduler_class", [
    ("euler", EulerDiscreteScheduler), ("euler_ancestral", EulerAncestralDiscreteScheduler),
    ("heun", HeunDiscreteScheduler)])
@parity_grid
def test_karras_style_samplers_match_diffusers(name, scheduler_class, steps, spacing, prediction):
    model_fn, noise = toy_model(), initial_noise()
    scheduler = scheduler_class(**SD_BETAS, prediction_type=PREDICTIONS[prediction], timestep_spacing=spacing)
    scheduler.set_timesteps(steps)
    stochastic = name == "euler_ancestral"
    step_kwargs = {"generator": torch.Generator().manual_seed(7)} if stochastic else {}
    theirs = run_diffusers(scheduler, model_fn, noise, steps=steps, **step_kwargs)
    ours = run_ours(name, model_fn, euler_family_noise(noise, scheduler), steps=steps, spacing=spacing,
                    prediction=prediction, seed=7 if stochastic else None)
    assert_parity(ours, theirs)


@pytest.mark.parametrize("spacing,steps", [("trailing", 9), ("trailing", 23), ("trailing", 50), ("linspace", 9)])
def test_euler_on_diffusers_own_timesteps_differs_only_by_diffusers_starting_noise(spacing, steps):
    """Handed EulerDiscreteScheduler's own timesteps (fractional for linspace 9), our Euler agrees with it to
    1e-5 once both start from the same x_T. Started from the same *noise* they differ by 2.3e-3 relative at any
    step count: diffusers starts linspace/trailing runs at sigma_max * noise (its init_noise_sigma), we at
    sqrt(sigma_max^2 + 1) * noise, the sigma-space x_T of unit-variance x_T, as SGM's samplers
    (prepare_sampling_loop) and LDM's DDIM (x_T = noise). Sigma interpolation, timestep rounding and the final
    sigma play no part. With zero-mean data the exact predictor makes the sampler linear in x_T, so the gap is
    exactly the ratio of the two starts, sqrt(sigma_max^2 + 1) / sigma_max = 1 + 1 / (2 sigma_max^2)."""
    schedule = make_schedule("scaled_linear")
    oracle = GaussianOracle(schedule, mean=0.0, std=0.25, prediction="eps")
    noise = initial_noise()
    scheduler = EulerDiscreteScheduler(**SD_BETAS, timestep_spacing=spacing)
    theirs = run_diffusers(scheduler, oracle, noise, steps=steps)
    timesteps = [float(t) for t in scheduler.timesteps]
    sigma_max = float(scheduler.sigmas.max())
    start_ratio = math.sqrt(sigma_max**2 + 1) / sigma_max

    def ours(start):
        return sample(oracle, start, SamplingSettings(sampler="euler", timesteps=timesteps), schedule=schedule,
                      progress=False)

    assert_parity(ours(noise / start_ratio), theirs)
    assert_parity(ours(noise), theirs * start_ratio)
    gap = ((ours(noise) - theirs).norm() / theirs.norm()).item()
    assert gap == pytest.approx(start_ratio - 1, rel=1e-2) and 2.3e-3 < gap < 2.4e-3


@parity_grid
def test_dpm_solver_pp_2m_matches_diffusers(steps, spacing, prediction):
    """DPMSolverMultistepScheduler spaces linspace and leading its own way (over steps + 1 points); we use one
    definition of each spacing for all samplers, so for those two we hand it our timesteps."""
    model_fn, noise = toy_model(), initial_noise()
    scheduler = DPMSolverMultistepScheduler(**SD_BETAS, algorithm_type="dpmsolver++", solver_order=2,
                                            prediction_type=PREDICTIONS[prediction], timestep_spacing=spacing)
    timesteps = None if spacing == "trailing" else spaced_timesteps(1000, steps, spacing)
    theirs = run_diffusers(scheduler, model_fn, noise, steps=steps, timesteps=timesteps)
    ours = run_ours("dpmpp_2m", model_fn, noise, steps=steps, spacing=spacing, prediction=prediction)
    assert_parity(ours, theirs)


@pytest.mark.parametrize("steps", STEP_COUNTS)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_karras_sigmas_match_diffusers(steps, prediction):
    """Euler on Karras sigmas, and DPM-Solver++(2M) on Karras sigmas. diffusers rounds the DPM-Solver's
    Karras timesteps to integers (we interpolate, as its Euler does), so that case uses a t-independent model."""
    noise = initial_noise()
    model_fn = toy_model()
    euler = EulerDiscreteScheduler(**SD_BETAS, prediction_type=PREDICTIONS[prediction], use_karras_sigmas=True)
    euler.set_timesteps(steps)
    assert_parity(run_ours("euler_karras", model_fn, euler_family_noise(noise, euler), steps=steps,
                           spacing="linspace", prediction=prediction),
                  run_diffusers(euler, model_fn, noise, steps=steps))
    model_fn = toy_model(time_dependent=False)
    dpm = DPMSolverMultistepScheduler(**SD_BETAS, algorithm_type="dpmsolver++", solver_order=2,
                                      prediction_type=PREDICTIONS[prediction], use_karras_sigmas=True)
    assert_parity(run_ours("dpmpp_2m_karras", model_fn, noise, steps=steps, spacing="linspace",
                           prediction=prediction),
                  run_diffusers(dpm, model_fn, noise, steps=steps))


# The oracle: data N(0.5, 0.25^2), exact predictor, zero-terminal-SNR schedule (so x_T really is pure noise and
# the start carries no bias) and linspace spacing (so the last step is short). 8192 values: the Monte-Carlo
# standard error is 0.0028 for the mean and 0.002 for the std. Tolerances: |mean error| < 0.01, |std error| < 0.01
# (4 % of 0.25). Steps: enough for each method — first-order ODE steps converge like 1/steps, the ancestral
# (DDPM) chain needs all 1000, DPM-Solver++(2M) overshoots on linspace's uneven last steps until ~400.
# consistency and turbo_euler_ancestral presume a distilled model: with the undistilled posterior-mean oracle
# consistency loses ~30 % of the std at any step count, so both are tested against the distilled oracle below.
ORACLE_STEPS = {"ddpm": 1000, "ddim": 400, "euler": 400, "euler_ancestral": 1000, "heun": 100, "dpmpp_2m": 400,
                "dpmpp_2m_karras": 100, "euler_karras": 400}


def test_oracle_covers_every_registered_sampler():
    assert set(ORACLE_STEPS) | {"consistency", "turbo_euler_ancestral"} == set(SAMPLERS)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("name", sorted(ORACLE_STEPS))
def test_every_sampler_reproduces_gaussian_data(name, prediction):
    schedule = make_schedule("scaled_linear", zero_terminal_snr=True)
    oracle = GaussianOracle(schedule, mean=0.5, std=0.25, prediction=prediction)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(8, 1, 32, 32, generator=generator)
    x0 = sample(oracle, noise, SamplingSettings(sampler=name, steps=ORACLE_STEPS[name], timestep_spacing="linspace"),
                schedule=schedule, prediction=prediction, generator=generator, progress=False)
    error = gaussian_fit_error(x0, mean=0.5, std=0.25)
    assert abs(error["mean_error"]) < 0.01 and abs(error["std_error"]) < 0.01, error


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("name", ["consistency", "turbo_euler_ancestral"])
def test_few_step_samplers_reproduce_gaussian_data_with_a_distilled_model(name, steps):
    schedule = make_schedule("scaled_linear", zero_terminal_snr=True)
    student = GaussianOracle(schedule, mean=0.5, std=0.25, prediction="v", distilled=True)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(8, 1, 32, 32, generator=generator)
    x0 = sample(student, noise, SamplingSettings(sampler=name, steps=steps), schedule=schedule, prediction="v",
                generator=generator, progress=False)
    error = gaussian_fit_error(x0, mean=0.5, std=0.25)
    assert abs(error["mean_error"]) < 0.01 and abs(error["std_error"]) < 0.01, error


def test_few_steps_of_an_ode_sampler_shrink_the_variance():
    """The oracle can tell a bad sampler from a good one: 3 Euler steps lose much of the data's spread."""
    schedule = make_schedule("scaled_linear", zero_terminal_snr=True)
    noise = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    x0 = sample(GaussianOracle(schedule), noise, SamplingSettings(sampler="euler", steps=3), schedule=schedule,
                progress=False)
    assert gaussian_fit_error(x0, 0.5, 0.25)["std_error"] < -0.05


@pytest.mark.parametrize("name", ["ddpm", "euler_ancestral", "dpmpp_2m", "consistency"])
def test_same_seed_gives_bit_identical_samples(name):
    model_fn = toy_model()
    runs = [run_ours(name, model_fn, initial_noise(), steps=6, spacing="trailing", prediction="v", seed=11)
            for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    if name in ("ddpm", "euler_ancestral", "consistency"):   # and the seed matters
        other = run_ours(name, model_fn, initial_noise(), steps=6, spacing="trailing", prediction="v", seed=12)
        assert not torch.equal(runs[0], other)


def test_unknown_sampler_lists_the_choices():
    with pytest.raises(ValueError, match="dpmpp_2m"):
        sample(toy_model(), initial_noise(), SamplingSettings(sampler="plms", steps=4), progress=False)


def test_explicit_timesteps_override_the_spacing():
    """SDXL-Turbo's demo timesteps (999, 899, 799, 699) vs diffusers' trailing four (999, 749, 499, 249)."""
    seen = []
    model_fn = toy_model()

    def recording(x, t):
        seen.append(round(float(t[0]), 3))
        return model_fn(x, t)

    trailing = run_ours("consistency", recording, initial_noise(), steps=4, spacing="trailing", prediction="v", seed=1)
    assert seen == [999, 749, 499, 249]
    explicit = sample(model_fn, initial_noise(),
                      SamplingSettings(sampler="consistency", timesteps=[999, 749, 499, 249]),
                      schedule=make_schedule("scaled_linear"), prediction="v",
                      generator=torch.Generator().manual_seed(1), progress=False)
    assert torch.equal(trailing, explicit)
    seen.clear()
    sample(recording, initial_noise(), SamplingSettings(sampler="consistency", timesteps=[999, 899, 799, 699]),
           progress=False)
    assert seen == [999, 899, 799, 699]
    with pytest.raises(ValueError, match="must decrease"):
        sample(model_fn, initial_noise(), SamplingSettings(timesteps=[249, 999]), progress=False)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_clipped_ddpm_matches_diffusers_clip_sample(prediction):
    """clip_x0=1 is DDPMScheduler's default clip_sample: x0 clamped to [-1, 1] before the posterior mean."""
    model_fn = lambda x, t: 3.0 * toy_model()(x, t)  # noqa: E731  (large outputs, so clipping bites)
    noise = initial_noise()
    scheduler = DDPMScheduler(**SD_BETAS, clip_sample=True, prediction_type=PREDICTIONS[prediction],
                              timestep_spacing="trailing")
    theirs = run_diffusers(scheduler, model_fn, noise, steps=10, generator=torch.Generator().manual_seed(7))
    ours = sample(model_fn, noise, SamplingSettings(sampler="ddpm", steps=10), prediction=prediction, clip_x0=1.0,
                  generator=torch.Generator().manual_seed(7), progress=False)
    unclipped = run_ours("ddpm", model_fn, noise, steps=10, spacing="trailing", prediction=prediction, seed=7)
    assert_parity(ours, theirs)
    assert not torch.allclose(ours, unclipped)


def run_turbo_demo_in_diffusers(model_fn, noise, steps: int, seed: int) -> torch.Tensor:
    """SDXL-Turbo's demo (generative-models scripts/demo/turbo.py) on diffusers' EulerAncestralDiscreteScheduler:
    the demo's sigmas (timesteps 999, 899, 799, 699 then sigma 0, from LegacyDDPMDiscretization) and start
    x_T * sqrt(1 + sigma_0^2) (SGM's prepare_sampling_loop; diffusers' "leading" init_noise_sigma) set by hand,
    since that scheduler takes no custom timesteps. Its step is the demo's EulerAncestralSampler(eta=1)."""
    scheduler = EulerAncestralDiscreteScheduler(**SD_BETAS, prediction_type="v_prediction", timestep_spacing="leading")
    scheduler.set_timesteps(steps)
    timesteps = torch.tensor([999, 899, 799, 699][:steps], dtype=torch.float32)
    table = ((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod).sqrt()
    scheduler.timesteps = timesteps
    scheduler.sigmas = torch.cat([table[timesteps.long()], torch.zeros(1)])
    generator = torch.Generator().manual_seed(seed)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.step(model_fn(scheduler.scale_model_input(x, t), t), t, x, generator=generator).prev_sample
    return x


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_turbo_euler_ancestral_is_the_official_turbo_demo(steps):
    model_fn, noise = toy_model(), initial_noise()
    seen = []

    def recording(x, t):
        seen.append(round(float(t[0]), 3))
        return model_fn(x, t)

    ours = sample(recording, noise, SamplingSettings(sampler="turbo_euler_ancestral", steps=steps), prediction="v",
                  generator=torch.Generator().manual_seed(5), progress=False)
    assert seen == [999, 899, 799, 699][:steps]
    assert_parity(ours, run_turbo_demo_in_diffusers(model_fn, noise, steps, seed=5))
    consistency = sample(model_fn, noise,
                         SamplingSettings(sampler="consistency", timesteps=[999, 899, 799, 699][:steps]),
                         prediction="v", generator=torch.Generator().manual_seed(5), progress=False)
    if steps == 1:   # one step: both are the jump to the clean estimate
        torch.testing.assert_close(ours, consistency)
    else:            # more: consistency sampling forgets the current noise, Euler-ancestral keeps part of it
        assert ((ours - consistency).norm() / consistency.norm()).item() > 1e-2


def test_turbo_euler_ancestral_takes_one_to_four_steps():
    with pytest.raises(ValueError, match="takes 1 to 4 steps, not 5"):
        sample(toy_model(), initial_noise(), SamplingSettings(sampler="turbo_euler_ancestral", steps=5), progress=False)


def test_the_old_few_step_name_still_means_consistency_sampling_with_a_warning():
    with pytest.warns(DeprecationWarning, match="now called 'consistency'"):
        old = run_ours("few_step", toy_model(), initial_noise(), steps=4, spacing="trailing", prediction="v", seed=2)
    new = run_ours("consistency", toy_model(), initial_noise(), steps=4, spacing="trailing", prediction="v", seed=2)
    assert torch.equal(old, new)
