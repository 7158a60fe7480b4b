"""An ensemble of expert denoisers: SDXL's base and refiner (Podell et al. 2023, §2.5; eDiff-I's "ensemble of
expert denoisers", Balaji et al. 2022).

SDXL's refiner is trained only on the first 200 of the 1000 discrete noise levels, the low-noise end where detail is
drawn. At sampling the base model denoises from sigma_max down to the switch level and hands its *latent*, still
noisy, to the refiner, which finishes the same trajectory: one sampler loop whose denoiser changes at the switch.
The sampler's state (a multistep solver's previous estimate) carries on across the hand-off, so with identical base
and refiner the result is exactly the base sampler's. (SGM's demo instead decodes nothing but re-noises the base's
finished latent and runs the refiner as img2img, SDEdit-style: ``sample(..., edit=ImageEdit(latent, strength))``.)

    x0 = sample_experts(Expert(base, cond=c), Expert(refiner, cond=c_ref), noise, settings, switch_timestep=200,
                        schedule=schedule, prediction="v")
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ldm_lab.diffusion.denoiser import Denoiser, ModelFn
from ldm_lab.diffusion.guidance import Cond, guided_model
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.samplers import run_sampler
from ldm_lab.diffusion.sampling import model_scaling, sampler_sigmas
from ldm_lab.diffusion.schedules import NoiseSchedule, as_schedule
from ldm_lab.diffusion.settings import SamplingSettings


@dataclass(frozen=True)
class Expert:
    """One denoiser of the ensemble: a network with its own conditioning and guidance."""

    model_fn: ModelFn                     # model_fn(x_t, timesteps, **cond) -> eps / v / x0 prediction
    cond: Cond = field(default_factory=dict)  # its conditioning (the refiner's has its own text and scalars)
    uncond: Cond | None = None            # its unconditional branch, for guidance
    guidance_scale: float | None = None   # its CFG scale; None: the settings' guidance_scale

    def denoiser(self, settings: SamplingSettings, schedule: NoiseSchedule, prediction: Prediction | str,
                 clip_x0: float | None) -> Denoiser:
        scale = settings.guidance_scale if self.guidance_scale is None else self.guidance_scale
        model = guided_model(self.model_fn, cond=self.cond, uncond=self.uncond, scale=scale,
                             rescale=settings.guidance_rescale)
        return Denoiser(model, schedule, prediction, clip_x0)


def switch_sigma(schedule: NoiseSchedule, switch_timestep: int) -> float:
    """The noise level of the hand-off: the refiner takes every level below that of ``switch_timestep`` (it was
    trained on timesteps [0, switch_timestep))."""
    if not 0 < switch_timestep < schedule.num_train_timesteps:
        raise ValueError(f"switch_timestep must be in (0, {schedule.num_train_timesteps}), not {switch_timestep}; "
                         "SDXL's refiner takes over below timestep 200.")
    return float(schedule.sigma_at(torch.tensor(switch_timestep)))


@torch.no_grad()
def sample_experts(base: Expert, refiner: Expert, noise: Tensor, settings: SamplingSettings = SamplingSettings(),
                   *, switch_timestep: int = 200, schedule: NoiseSchedule | str = "scaled_linear",
                   prediction: Prediction | str = "eps", clip_x0: float | None = None,
                   generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
    """Sample as :func:`ldm_lab.diffusion.sample` does, with ``base`` denoising the levels at or above
    ``switch_timestep``'s and ``refiner`` the levels below it (SDXL §2.5). Both must share the schedule, the
    prediction type and the latent space."""
    spec, schedule = settings.sampler_spec(), as_schedule(schedule)
    sigmas = sampler_sigmas(spec, schedule, settings)
    base_denoiser = base.denoiser(settings, schedule, prediction, clip_x0)
    refiner_denoiser = refiner.denoiser(settings, schedule, prediction, clip_x0)
    handoff = switch_sigma(schedule, switch_timestep)

    def denoise(x: Tensor, sigma: float) -> Tensor:
        return (refiner_denoiser if sigma < handoff else base_denoiser)(x, sigma)

    x = noise * (float(sigmas[0]) ** 2 + 1) ** 0.5   # x_T = noise in the model's scaling, as sample() starts
    generator = settings.generator() if generator is None else generator
    x = run_sampler(spec.step, denoise, x, sigmas, generator=generator, progress=progress)
    return model_scaling(x, float(sigmas[-1]))


def refiner_steps(schedule: NoiseSchedule | str, settings: SamplingSettings, switch_timestep: int = 200) -> int:
    """How many of the sampler's steps the refiner takes (the levels below the switch)."""
    schedule = as_schedule(schedule)
    sigmas = sampler_sigmas(settings.sampler_spec(), schedule, settings)[:-1]
    return int((sigmas < switch_sigma(schedule, switch_timestep)).sum())
