"""The sampling entry point: schedule -> noise levels -> denoiser (with guidance) -> sampler loop.

    x0 = sample(model_fn, noise, SamplingSettings(sampler="dpmpp_2m", steps=20, guidance_scale=7.5),
                schedule="scaled_linear", prediction="eps", cond=..., uncond=...)
    x0 = sample(model_fn, noise, settings, edit=ImageEdit(image, strength=0.6))      # SDEdit / img2img

``model_fn(x_t, timesteps, **cond)`` is a discrete-time network: it sees x_t = sqrt(ab) x0 + sqrt(1 - ab) eps and
(fractional) timesteps in [0, T-1], and returns its eps, v or x0 prediction. ``noise`` is standard normal; the
result is the clean sample (an image, or a latent for the autoencoder to decode).

The start: ``noise`` is x_T, so the sigma-space sampler starts at sqrt(sigma_max^2 + 1) * noise, as SGM's samplers
(``prepare_sampling_loop``) and LDM's DDIM do. diffusers' Euler-family schedulers with linspace or trailing
spacing start at sigma_max * noise instead (their ``init_noise_sigma``): 1 / (2 sigma_max^2) = 0.23 % smaller for
SD's schedule, which is the whole 2.3e-3 relative gap between our ``euler`` and ``EulerDiscreteScheduler`` on the
same timesteps (tests/test_samplers.py pins it). Pass ``noise * sigma_max / sqrt(sigma_max^2 + 1)`` to start
where they do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ldm_lab.diffusion.denoiser import Denoiser, ModelFn
from ldm_lab.diffusion.discretisation import append_final_sigma, karras_schedule_sigmas, spaced_sigmas
from ldm_lab.diffusion.editing import ImageEdit
from ldm_lab.diffusion.guidance import Cond, guided_model
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.samplers import SamplerSpec, SamplerStep, run_sampler
from ldm_lab.diffusion.schedules import NoiseSchedule, as_schedule
from ldm_lab.diffusion.settings import SamplingSettings


def sampler_sigmas(spec: SamplerSpec, schedule: NoiseSchedule, settings: SamplingSettings) -> Tensor:
    """[steps + 1] the decreasing noise levels the sampler visits, ending in 0 or sigma_0 (``settings.final_sigma``,
    default the sampler's own). Explicit ``settings.timesteps`` win over steps and spacing."""
    final = spec.final_sigma if settings.final_sigma is None else settings.final_sigma
    timesteps = settings.timesteps
    if timesteps is None and spec.timesteps is not None:
        timesteps = fixed_timesteps(spec.timesteps, settings.steps, schedule)
    if timesteps is not None:
        if list(timesteps) != sorted(timesteps, reverse=True):
            raise ValueError(f"timesteps must decrease (noisiest first), got {list(timesteps)}")
        return append_final_sigma(schedule.sigma_at(torch.tensor(timesteps)), schedule, final)
    if spec.karras_sigmas:
        return karras_schedule_sigmas(schedule, settings.steps, final=final)
    return spaced_sigmas(schedule, settings.steps, settings.timestep_spacing, settings.steps_offset, final)


def fixed_timesteps(timesteps: tuple[int, ...], steps: int, schedule: NoiseSchedule) -> tuple[int, ...]:
    """The first ``steps`` of a sampler's fixed timesteps (SDXL-Turbo's demo: 999, 899, 799, 699)."""
    if not 1 <= steps <= len(timesteps):
        raise ValueError(f"this sampler visits the fixed timesteps {timesteps}, so it takes 1 to {len(timesteps)} "
                         f"steps, not {steps}; pass steps=1..{len(timesteps)}, or timesteps=... of your own.")
    if max(timesteps) >= schedule.num_train_timesteps:
        raise ValueError(f"the fixed timesteps {timesteps} need a schedule of at least {max(timesteps) + 1} "
                         f"training timesteps; this one has {schedule.num_train_timesteps}. Pass timesteps=...")
    return timesteps[:steps]


def model_scaling(x: Tensor, sigma: float) -> Tensor:
    """The sampler's x = x_t / sqrt(ab) back in the model's scaling x_t = x / sqrt(sigma^2 + 1); x itself at
    sigma = 0. The official DDIM returns x_t at ab_0 (LDM's DDIMSampler, SD's DDIMScheduler)."""
    return x if sigma == 0 else x / (sigma**2 + 1) ** 0.5


@torch.no_grad()
def sample(model_fn: ModelFn, noise: Tensor, settings: SamplingSettings = SamplingSettings(), *,
           schedule: NoiseSchedule | str = "scaled_linear", prediction: Prediction | str = "eps",
           clip_x0: float | None = None, cond: Cond | None = None, uncond: Cond | None = None,
           edit: ImageEdit | None = None, generator: torch.Generator | None = None, progress: bool = True) -> Tensor:
    """Draw samples by integrating from noise to data, as ``settings`` say (sampler, steps, guidance ...).

    schedule / prediction: the model's noise schedule and what it predicts ("eps", "v" or "x0").
    clip_x0: clamp every x0 estimate to [-clip_x0, clip_x0] (1.0 for pixel models; None for latents).
    cond / uncond: keyword arguments of ``model_fn``; ``uncond`` (the empty or a negative prompt) is needed when
        ``settings.guidance_scale != 1``.
    edit: start from an image (SDEdit by strength, inpainting by mask) instead of pure noise.
    generator: source of any fresh noise (ancestral samplers); default ``settings.generator()``.
    """
    spec = settings.sampler_spec()
    schedule = as_schedule(schedule)
    sigmas = sampler_sigmas(spec, schedule, settings)
    model = guided_model(model_fn, cond=cond or {}, uncond=uncond, scale=settings.guidance_scale,
                         rescale=settings.guidance_rescale)
    denoiser = Denoiser(model, schedule, prediction, clip_x0)
    if edit is None:
        x, after_step = noise * (float(sigmas[0]) ** 2 + 1) ** 0.5, None    # x_T = noise in the model's scaling
    else:
        sigmas, x, after_step = edit.start(sigmas, noise)
    generator = settings.generator() if generator is None else generator
    x = run_sampler(spec.step, denoiser, x, sigmas, generator=generator, after_step=after_step, progress=progress)
    return model_scaling(x, float(sigmas[-1]))


def compare_samplers(model_fn: ModelFn, noise: Tensor, samplers: Sequence[str],
                     settings: SamplingSettings = SamplingSettings(seed=0), **model: Any) -> dict[str, Tensor]:
    """The same starting noise (and, for fresh noise, a generator seeded alike: ``settings.seed``) through each
    named sampler, with the rest of ``settings``; ``model`` options (schedule, prediction, clip_x0, cond ...) go
    to :func:`sample`."""
    return {name: sample(model_fn, noise, dataclasses.replace(settings, sampler=name), **model) for name in samplers}
