"""The sampling entry point: schedule -> noise levels -> denoiser (with guidance) -> sampler loop.

    x0 = sample(model_fn, noise, sampler="dpmpp_2m", steps=20, schedule="scaled_linear",
                timestep_spacing="trailing", prediction="eps", guidance_scale=7.5, cond=..., uncond=...)

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

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ldm_lab.diffusion.denoiser import Denoiser, ModelFn
from ldm_lab.diffusion.discretisation import (FinalSigma, TimestepSpacing, append_final_sigma, karras_schedule_sigmas,
                                              spaced_sigmas)
from ldm_lab.diffusion.editing import mask_blending, noised_image, strength_sigmas
from ldm_lab.diffusion.guidance import Cond, guided_model
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.samplers import SamplerSpec, SamplerStep, get_sampler, run_sampler
from ldm_lab.diffusion.schedules import NoiseSchedule, as_schedule


def sampler_sigmas(spec: SamplerSpec, schedule: NoiseSchedule, steps: int,
                   timestep_spacing: TimestepSpacing | str = "trailing", steps_offset: int = 0,
                   timesteps: Sequence[int] | None = None, final_sigma: FinalSigma | str | None = None) -> Tensor:
    """[steps + 1] the decreasing noise levels the sampler visits, ending in 0 or sigma_0 (``final_sigma``,
    default the sampler's own). Explicit ``timesteps`` win over steps and spacing."""
    final = spec.final_sigma if final_sigma is None else final_sigma
    if timesteps is None and spec.timesteps is not None:
        timesteps = fixed_timesteps(spec.timesteps, steps, schedule)
    if timesteps is not None:
        if list(timesteps) != sorted(timesteps, reverse=True):
            raise ValueError(f"timesteps must decrease (noisiest first), got {list(timesteps)}")
        return append_final_sigma(schedule.sigma_at(torch.tensor(timesteps)), schedule, final)
    if spec.karras_sigmas:
        return karras_schedule_sigmas(schedule, steps, final=final)
    return spaced_sigmas(schedule, steps, timestep_spacing, steps_offset, final)


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
def sample(model_fn: ModelFn, noise: Tensor, *,
           sampler: str | SamplerSpec | SamplerStep = "euler", steps: int = 30,
           schedule: NoiseSchedule | str = "scaled_linear", prediction: Prediction | str = "eps",
           clip_x0: float | None = None,
           timestep_spacing: TimestepSpacing | str = "trailing", steps_offset: int = 0,
           timesteps: Sequence[int] | None = None, final_sigma: FinalSigma | str | None = None,
           guidance_scale: float = 1.0, guidance_rescale: float = 0.0, cond: Cond | None = None,
           uncond: Cond | None = None,
           image: Tensor | None = None, strength: float = 1.0, mask: Tensor | None = None,
           generator: torch.Generator | None = None, progress: bool = True) -> Tensor:
    """Draw samples by integrating from noise to data.

    sampler: a name in ``SAMPLERS`` or an update rule such as ``EulerAncestral(eta=0.5)``.
    clip_x0: clamp every x0 estimate to [-clip_x0, clip_x0] (1.0 for pixel models; None for latents).
    timestep_spacing / steps_offset: which timesteps the steps visit (see ``spaced_timesteps``).
    timesteps: explicit timesteps, overriding steps and spacing — e.g. SDXL-Turbo's official demo takes
        (999, 899, 799, 699) where diffusers' trailing spacing gives (999, 749, 499, 249). The sampler
        "turbo_euler_ancestral" is that demo: its first ``steps`` (1 to 4) of them, Euler-ancestral, no guidance.
    final_sigma: where the last step lands, "zero" (the clean sample) or "sigma_min" (x_t at the first training
        level ab_0, returned in the model's scaling, as LDM's DDIMSampler and SD's set_alpha_to_one=False do);
        None: the sampler's own choice ("ddim": "sigma_min", every other sampler: "zero").
    guidance_scale / guidance_rescale / cond / uncond: classifier-free guidance (``uncond`` may be a negative prompt).
    image / strength: SDEdit — start from ``image`` noised to the level of the last ``int(steps * strength)`` steps.
    mask: with ``image``, inpaint by blending: 1 = generate, 0 = keep the image.
    """
    spec = get_sampler(sampler)
    schedule = as_schedule(schedule)
    sigmas = sampler_sigmas(spec, schedule, steps, timestep_spacing, steps_offset, timesteps, final_sigma)
    model = guided_model(model_fn, cond=cond or {}, uncond=uncond, scale=guidance_scale, rescale=guidance_rescale)
    denoiser = Denoiser(model, schedule, prediction, clip_x0)
    if image is None:
        if mask is not None:
            raise ValueError("mask needs the image whose unmasked region is kept: pass image=... as well")
        x = noise * (float(sigmas[0]) ** 2 + 1) ** 0.5    # x_T = noise in the model's scaling
    else:
        sigmas = strength_sigmas(sigmas, strength)
        x = noised_image(image, noise, float(sigmas[0]))
    after_step = mask_blending(image, mask, noise) if mask is not None else None
    x = run_sampler(spec.step, denoiser, x, sigmas, generator=generator, after_step=after_step, progress=progress)
    return model_scaling(x, float(sigmas[-1]))


def compare_samplers(model_fn: ModelFn, noise: Tensor, samplers: Sequence[str], *, seed: int = 0,
                     **options: Any) -> dict[str, Tensor]:
    """The same starting noise (and the same seed for any fresh noise) through each sampler; ``options`` go to
    :func:`sample`."""
    return {name: sample(model_fn, noise, sampler=name, generator=torch.Generator().manual_seed(seed), **options)
            for name in samplers}
