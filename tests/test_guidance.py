"""Classifier-free guidance, guidance rescale, SDEdit / img2img and inpainting (blending and concatenation)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from diffusers import DDIMScheduler

from ldm_lab.diffusion import (ImageEdit, SamplingSettings, classifier_free_guidance, guided_model, make_schedule,
                               rescale_guidance, sample)
from ldm_lab.diffusion.editing import concat_inpainting_model, strength_sigmas


def conditional_model(x: torch.Tensor, t: torch.Tensor, *, label: torch.Tensor) -> torch.Tensor:
    """A toy eps-model whose prediction depends on a per-sample label."""
    label = label.reshape(-1, 1, 1, 1)
    return 0.8 * x * (1 + 0.2 * label) + label * torch.cos(t / 1000).reshape(-1, 1, 1, 1)


def images(seed: int = 0, shape=(2, 4, 8, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


COND, UNCOND = {"label": torch.tensor([1.0, -2.0])}, {"label": torch.tensor([0.0, 0.0])}


def test_cfg_scale_one_is_the_conditional_prediction_and_zero_the_unconditional():
    x, t = images(), torch.full((2,), 500.0)
    uncond, cond = conditional_model(x, t, **UNCOND), conditional_model(x, t, **COND)
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 1.0), cond)
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 0.0), uncond)
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 7.5), uncond + 7.5 * (cond - uncond))
    torch.testing.assert_close(guided_model(conditional_model, cond=COND, uncond=UNCOND, scale=1.0)(x, t), cond)
    guided = guided_model(conditional_model, cond=COND, uncond=UNCOND, scale=4.0)(x, t)
    torch.testing.assert_close(guided, uncond + 4.0 * (cond - uncond))


def test_negative_conditioning_is_the_unconditional_branch():
    """Guidance pushes away from the negative prediction: guided - cond = (w - 1)(cond - negative)."""
    x, t = images(), torch.full((2,), 300.0)
    negative = {"label": torch.tensor([3.0, 3.0])}
    guided = guided_model(conditional_model, cond=COND, uncond=negative, scale=5.0)(x, t)
    cond, neg = conditional_model(x, t, **COND), conditional_model(x, t, **negative)
    torch.testing.assert_close(guided - cond, 4.0 * (cond - neg))


def test_guidance_without_unconditional_says_what_to_pass():
    with pytest.raises(ValueError, match="uncond="):
        guided_model(conditional_model, cond=COND, scale=7.5)


def test_guidance_rescale_math():
    """Lin et al. 2023, eq. 15-16: phi = 0 leaves the prediction alone, phi = 1 restores each sample's std to
    the conditional prediction's, and phi in between mixes linearly."""
    cond, guided = images(1), 3.0 * images(2) + 1.0
    torch.testing.assert_close(rescale_guidance(guided, cond, 0.0), guided)
    full = rescale_guidance(guided, cond, 1.0)
    torch.testing.assert_close(full.flatten(1).std(1), cond.flatten(1).std(1))
    torch.testing.assert_close(full, guided * cond.flatten(1).std(1).reshape(-1, 1, 1, 1)
                               / guided.flatten(1).std(1).reshape(-1, 1, 1, 1))
    torch.testing.assert_close(rescale_guidance(guided, cond, 0.7), 0.7 * full + 0.3 * guided)


def test_sampling_with_guidance_and_rescale_runs_and_changes_the_result():
    noise = images(3)
    settings, kwargs = SamplingSettings(sampler="dpmpp_2m", steps=5), dict(cond=COND, uncond=UNCOND, progress=False)
    plain = sample(conditional_model, noise, settings, **kwargs)
    guided = sample(conditional_model, noise, replace(settings, guidance_scale=6.0), **kwargs)
    rescaled = sample(conditional_model, noise, replace(settings, guidance_scale=6.0, guidance_rescale=0.7), **kwargs)
    assert not torch.allclose(plain, guided) and not torch.allclose(guided, rescaled)
    assert torch.isfinite(rescaled).all()


def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.9 * x * torch.cos(t / 2000).reshape(-1, 1, 1, 1)


def test_sdedit_strength_zero_returns_the_image():
    image, noise = images(4), images(5)
    out = sample(eps_model, noise, SamplingSettings(steps=10), edit=ImageEdit(image, strength=0.0), progress=False)
    assert torch.equal(out, image)


def test_sdedit_starts_from_the_image_noised_to_the_first_kept_timestep():
    """Like diffusers' img2img: keep the last int(steps * strength) timesteps, and start from
    add_noise(image, noise, that first timestep) — the model's first input must be exactly that."""
    image, noise = images(4), images(5)
    steps, strength = 10, 0.55
    seen = []

    def recording_model(x_t, t):
        seen.append((x_t.clone(), t.clone()))
        return eps_model(x_t, t)

    settings = SamplingSettings(sampler="ddim", steps=steps, timestep_spacing="leading", steps_offset=1)
    sample(recording_model, noise, settings, edit=ImageEdit(image, strength=strength), progress=False)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              timestep_spacing="leading", steps_offset=1)
    scheduler.set_timesteps(steps)
    kept = scheduler.timesteps[steps - int(steps * strength):]
    assert len(seen) == len(kept) == 5
    torch.testing.assert_close(seen[0][1], torch.full((2,), float(kept[0])), atol=1e-3, rtol=0)
    expected = scheduler.add_noise(image, noise, kept[:1])
    torch.testing.assert_close(seen[0][0], expected, rtol=1e-5, atol=1e-5)


def test_sdedit_strength_one_is_sampling_from_noise_under_zero_terminal_snr():
    """With ab_T = 0 the image leaves no trace at t = T-1 (up to diffusers' 2**-24 floor on ab_T, which lets
    2**-12 of it through); with SD's schedule sqrt(ab_T) = 0.068 of the image leaks into the start."""
    image, noise = images(4), images(5)
    for zero_snr, close in [(True, True), (False, False)]:
        schedule = make_schedule("scaled_linear", zero_terminal_snr=zero_snr)
        settings, kwargs = SamplingSettings(sampler="euler", steps=8), dict(schedule=schedule, prediction="v",
                                                                            progress=False)
        edited = sample(eps_model, noise, settings, edit=ImageEdit(image, strength=1.0), **kwargs)
        generated = sample(eps_model, noise, settings, **kwargs)
        relative = ((edited - generated).norm() / generated.norm()).item()
        assert (relative < 1e-3) == close, relative


def test_strength_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        strength_sigmas(torch.linspace(10, 0, 11), 1.5)


def test_mask_blending_keeps_the_known_region():
    image, noise = images(6), images(7)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0                      # generate the centre, keep the border
    out = sample(eps_model, noise, SamplingSettings(sampler="euler_ancestral", steps=6),
                 edit=ImageEdit(image, mask=mask), generator=torch.Generator().manual_seed(0), progress=False)
    torch.testing.assert_close(out * (1 - mask), image * (1 - mask), rtol=0, atol=0)
    assert not torch.allclose(out * mask, image * mask)


def test_concat_inpainting_feeds_latent_mask_and_masked_image():
    """SD-inpainting's U-Net sees 9 channels: [noisy latent (4), mask (1), masked-image latent (4)]."""
    latent_mask = torch.zeros(1, 1, 8, 8)
    latent_mask[..., :4] = 1.0
    masked_latent = images(8, shape=(1, 4, 8, 8)) * (1 - latent_mask)
    seen = {}

    def nine_channel_model(x, t, *, label):
        seen["x"] = x
        return x[:, :4] * 0.5 + label.reshape(-1, 1, 1, 1)

    model = concat_inpainting_model(nine_channel_model, latent_mask, masked_latent)
    out = sample(model, images(9), SamplingSettings(guidance_scale=3.0, steps=3), cond=COND, uncond=UNCOND,
                 progress=False)
    assert out.shape == (2, 4, 8, 8) and seen["x"].shape == (2, 9, 8, 8)
    torch.testing.assert_close(seen["x"][:, 4:5], latent_mask.expand(2, -1, -1, -1))
    torch.testing.assert_close(seen["x"][:, 5:], masked_latent.expand(2, -1, -1, -1))
