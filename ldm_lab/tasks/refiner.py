"""Base + refiner sampling with trained models (SDXL §2.5): the latent hand-off at the switch timestep, and the
SDEdit-style refine of the base's finished latent that SGM's demo runs, for comparison.

    images = generate_with_refiner(base, refiner, prompts=["a large red circle"], settings=SamplingSettings(seed=0))
    images = generate_with_refiner(base, refiner, prompts=..., handoff=Handoff.SDEDIT)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch import Tensor

from ldm_lab.data import build_dataset, collate
from ldm_lab.device import model_device
from ldm_lab.diffusion import ImageEdit, SamplingSettings, sample
from ldm_lab.diffusion.experts import Expert, refiner_steps, sample_experts
from ldm_lab.models import LatentDiffusion
from ldm_lab.tasks.diffusion import SIZE_KEYS, DiffusionTask, conditions_of, request, settings_for

LATENT_SCALE_TOLERANCE = 0.02  # base and refiner latent scales may differ this much (relative): both measure 1/std
                               # of the same first stage's latents, from different draws


class Handoff(str, Enum):
    """How the refiner takes over from the base."""

    LATENT = "latent"   # the base's noisy latent at the switch level, same trajectory (ensemble of experts)
    SDEDIT = "sdedit"   # the base's finished latent, re-noised to the switch level and denoised again (img2img)


def check_same_latent_space(base: LatentDiffusion, refiner: LatentDiffusion) -> None:
    """The refiner must denoise the base's latents: same first stage design, schedule, prediction and scale."""
    if base.first_stage.config != refiner.first_stage.config or base.preset.prediction != refiner.preset.prediction:
        raise ValueError(f"{refiner.preset.name} does not share {base.preset.name}'s first stage and prediction type; "
                         "train the refiner on the base's first stage (lab-sdxl-refiner on lab-shapes-autoencoder).")
    if base.preset.schedule != refiner.preset.schedule:
        raise ValueError("base and refiner were trained with different noise schedules; the hand-off needs one.")
    ratio = float(refiner.latent_scale / base.latent_scale)
    if not abs(ratio - 1) <= LATENT_SCALE_TOLERANCE:
        raise ValueError(f"the refiner's latent scale is {ratio:.3f} x the base's: their latents differ in scale. "
                         "Train both on the same first stage and data, or fix the preset's latent_scale.")


def _conditions(model: LatentDiffusion, batch: Mapping[str, Any], num: int, size: tuple[int, int],
                guided: bool) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """A model's (cond, uncond) for the request: its own keys of ``batch``, sizes defaulting to ``size``."""
    mine = {key: value for key, value in batch.items() if key in model.condition_keys}
    mine = {**{key: torch.tensor([size] * num) for key in SIZE_KEYS if key in model.condition_keys}, **mine}
    return model.condition(mine, num), (model.unconditional(mine, num) if guided else None)


@torch.no_grad()
def generate_with_refiner(base: LatentDiffusion, refiner: LatentDiffusion, num: int | None = None, *,
                          prompts: list[str] | None = None, conditions: Mapping[str, Any] | None = None,
                          settings: SamplingSettings = SamplingSettings(), switch_timestep: int | None = None,
                          handoff: Handoff | str = Handoff.LATENT, refiner_guidance_scale: float | None = None,
                          size: tuple[int, int] | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Images ``[N, C, H, W]`` in [-1, 1] drawn by ``base`` and finished by ``refiner`` (SDXL §2.5).

    ``switch_timestep``: the refiner takes the levels below it (default: the top of the refiner's training range,
    200). ``conditions`` hold both models' data-batch conditions (the refiner reads ``caption``, the sizes and
    ``aesthetic_score``, default 6.0). ``Handoff.SDEDIT`` lets the base finish, then re-noises its latent to the
    switch level with fresh noise and lets the refiner denoise it over its share of the steps."""
    check_same_latent_space(base, refiner)
    batch = request(None, prompts, conditions)
    num = num if not batch else base.count(batch)
    if num is None:
        raise ValueError("say how many images to draw: pass num=..., or prompts (one image each).")
    size = tuple(base.preset.resolution) if size is None else tuple(size)
    switch = switch_timestep or (refiner.config.timestep_range or (0, 200))[1]
    guided = settings.guidance_scale != 1.0
    base_cond, base_uncond = _conditions(base, batch, num, size, guided)
    refiner_scale = settings.guidance_scale if refiner_guidance_scale is None else refiner_guidance_scale
    refiner_cond, refiner_uncond = _conditions(refiner, batch, num, size, refiner_scale != 1.0)
    generator = settings.generator() if generator is None else generator
    noise = torch.randn(num, *base.latent_shape_at(size), generator=generator).to(model_device(base))
    model = dict(schedule=base.schedule, prediction=base.preset.prediction.value, generator=generator)
    if Handoff(handoff) is Handoff.LATENT:
        latent = sample_experts(Expert(base, base_cond, base_uncond),
                                Expert(refiner, refiner_cond, refiner_uncond, refiner_scale), noise, settings,
                                switch_timestep=switch, **model)
    else:
        latent = sample(base, noise, settings, cond=base_cond, uncond=base_uncond, progress=False, **model)
        # SDEdit runs the last int(steps * strength) steps: exactly the refiner's share (+ 0.5 against rounding)
        strength = min(1.0, (refiner_steps(base.schedule, settings, switch) + 0.5) / settings.steps)
        fresh = torch.randn(noise.shape, generator=generator).to(noise.device)
        refine = dataclasses.replace(settings, guidance_scale=refiner_scale)
        latent = sample(refiner, fresh, refine, cond=refiner_cond, uncond=refiner_uncond,
                        edit=ImageEdit(latent, strength=strength), progress=False, **model)
    return base.decode(latent).clamp(-1, 1)


@dataclass(frozen=True)
class LowNoiseTask(DiffusionTask):
    """The diffusion task of a low-noise expert (SDXL's refiner). It trains as ``DiffusionTask`` (its model's
    ``timestep_range`` limits the timesteps); its sample grids show what it was trained for: the first validation
    images of ``dataset``, noised to the top of its range and denoised by it (SDEdit over its share of the steps),
    since from pure noise, a level it never saw, it draws nothing."""

    dataset: str = "shapes_multiscale_scored"   # whose validation images the grids refine

    def sample(self, model: LatentDiffusion) -> Tensor:
        data = build_dataset(self.dataset, "val", model.preset.resolution)
        batch = collate([data[i] for i in range(self.sample_num)])
        device = model_device(model)
        latents = model.encode(batch["image"].to(device))
        settings = settings_for(model, self.sampling)
        high = (model.config.timestep_range or (0, model.schedule.num_train_timesteps))[1]
        strength = min(1.0, (refiner_steps(model.schedule, settings, high) + 0.5) / settings.steps)
        noise = torch.randn(latents.shape, generator=settings.generator()).to(device)
        conditions = conditions_of(model, batch)
        guided = settings.guidance_scale != 1.0
        refined = sample(model, noise, settings, schedule=model.schedule, prediction=model.preset.prediction.value,
                         cond=model.condition(conditions, len(latents)),
                         uncond=model.unconditional(conditions, len(latents)) if guided else None,
                         edit=ImageEdit(latents, strength=strength), progress=False)
        return model.decode(refined).clamp(-1, 1)
