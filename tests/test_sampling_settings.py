"""SamplingSettings: one default for every function that samples, checked fields, eta and seed, and a record line."""

from __future__ import annotations

import inspect
import math
from dataclasses import replace

import pytest
import torch

from ldm_lab.bench import bench_target
from ldm_lab.diffusion import SAMPLERS, EulerAncestral, SamplingSettings, compare_samplers, make_schedule, sample
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.tasks import DiffusionTask, generate, generate_like
from ldm_lab.widgets import sampling_controls


def default_of(function, parameter: str):
    return inspect.signature(function).parameters[parameter].default


def test_every_sampling_function_has_the_one_default():
    """sample() used to default to Euler/30 and generate() to DPM++/20; now both (and the rest) take
    SamplingSettings(), whose defaults are DPM-Solver++(2M), 20 trailing steps, no guidance."""
    one = SamplingSettings()
    assert (one.sampler, one.steps, one.guidance_scale, one.timestep_spacing) == ("dpmpp_2m", 20, 1.0, "trailing")
    assert default_of(sample, "settings") == one
    assert default_of(generate, "settings") == one
    assert default_of(generate_like, "settings") == one
    assert replace(default_of(compare_samplers, "settings"), seed=None) == one
    assert DiffusionTask().sampling == one and DiffusionTask(guidance_scale=3.0).sampling == replace(
        one, guidance_scale=3.0)
    assert sampling_controls()["steps"].value == one.steps
    for function in (sample, generate, generate_like, bench_target):  # no loose sampler/steps/guidance options
        assert not {"sampler", "steps", "sample_steps", "guidance_scale"} & set(inspect.signature(function).parameters)


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf])
def test_generate_refuses_a_non_finite_guidance_scale(scale):
    model = LatentDiffusion(LatentDiffusionConfig("lab-class")).eval()
    with pytest.raises(ValueError, match="guidance_scale must be a finite number.*NaN \\(black\\)"):
        generate(model, labels=torch.tensor([1]), settings=SamplingSettings(steps=1, guidance_scale=scale))
    with pytest.raises(ValueError, match="guidance_scale must be a finite number"):
        replace(SamplingSettings(), guidance_scale=scale)


@pytest.mark.parametrize("fields, message", [
    (dict(steps=0), "steps must be a whole number >= 1"),
    (dict(steps=2.5), "steps must be a whole number >= 1"),
    (dict(guidance_rescale=1.5), r"guidance_rescale must be in \[0, 1\]"),
    (dict(guidance_rescale=math.nan), "guidance_rescale must be a finite number"),
    (dict(eta=-0.5), "eta must be a finite number >= 0"),
    (dict(timestep_spacing="uniform"), "Valid timestep spacings: linspace, leading, trailing"),
    (dict(final_sigma="one"), "Valid final sigmas: zero, sigma_min"),
    (dict(sampler="dpm_2m"), "Did you mean 'dpmpp_2m'"),
])
def test_bad_settings_are_refused_when_made(fields, message):
    with pytest.raises(ValueError, match=message):
        SamplingSettings(**fields)


def test_eta_sets_the_ancestral_noise_and_is_refused_where_there_is_none():
    assert SamplingSettings(sampler="ddim", eta=1.0).sampler_spec().step == SAMPLERS["ddpm"].step
    assert SamplingSettings(sampler="ddpm", eta=0.3).sampler_spec().step == EulerAncestral(eta=0.3)
    assert SamplingSettings(sampler="ddim").sampler_spec() == SAMPLERS["ddim"]
    with pytest.raises(ValueError, match="dpmpp_2m has none"):
        SamplingSettings(eta=0.5).sampler_spec()


def toy_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.7 * x * torch.cos(t / 1500).reshape(-1, 1, 1, 1)


def test_the_seed_seeds_the_fresh_noise_unless_a_generator_is_passed():
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    settings = SamplingSettings(sampler="euler_ancestral", steps=4, seed=5)
    seeded = sample(toy_eps, noise, settings, schedule=make_schedule("scaled_linear"), progress=False)
    passed = sample(toy_eps, noise, replace(settings, seed=None), generator=torch.Generator().manual_seed(5),
                    progress=False)
    other = sample(toy_eps, noise, replace(settings, seed=6), progress=False)
    assert torch.equal(seeded, passed) and not torch.equal(seeded, other)


def test_generate_draws_the_same_images_from_the_same_seed():
    model = LatentDiffusion(LatentDiffusionConfig("lab-class")).eval()
    settings = SamplingSettings(sampler="ddpm", steps=2, guidance_scale=2.0, seed=3)
    first = generate(model, labels=torch.tensor([0, 4]), settings=settings)
    assert torch.equal(first, generate(model, labels=torch.tensor([0, 4]), settings=settings))
    assert not torch.equal(first, generate(model, labels=torch.tensor([0, 4]), settings=replace(settings, seed=4)))


def test_describe_keeps_the_record_format_and_adds_what_differs():
    assert SamplingSettings(seed=0).describe() == "sampler=dpmpp_2m steps=20 guidance=1 seed=0"
    assert SamplingSettings(sampler="ddim", steps=10, guidance_scale=7.5, eta=0.5, final_sigma="zero",
                            timesteps=[999, 499]).describe() == (
        "sampler=ddim steps=10 guidance=7.5 eta=0.5 timesteps=(999, 499) final_sigma=zero")
    assert SamplingSettings(sampler=EulerAncestral(eta=0.5)).describe().startswith(
        "sampler=EulerAncestral(eta=0.5) ")
