"""The diffusion training task (LDM eq. 2) and image generation with classifier-free guidance.

    task = DiffusionTask(sample_labels=torch.arange(16) % 10)
    train(model, task, data, config, run_dir)       # loss: ||target - eps_theta(z_t, t, tau(y))||^2
    images = generate(model, labels=torch.tensor([3, 7]), guidance_scale=3.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ldm_lab.diffusion import DiffusionLoss, sample
from ldm_lab.models import Conditioning, LatentDiffusion


def drop_conditions(model: LatentDiffusion, batch: dict, rate: float) -> dict:
    """The batch's labels or captions, each replaced by "no condition" with probability ``rate``: the
    null class, or the empty prompt (Ho & Salimans 2022, Alg. 1: p_uncond)."""
    if model.conditioning is Conditioning.NONE:
        return {}
    drop = torch.rand(len(batch["image"])) < rate  # on the CPU: the same draw on every device
    if model.conditioning is Conditioning.CLASS:
        labels = torch.as_tensor(batch["label"]).cpu()
        return {"labels": torch.where(drop, torch.full_like(labels, model.num_classes), labels)}
    return {"prompts": ["" if dropped else caption for dropped, caption in zip(drop.tolist(), batch["caption"])]}


@torch.no_grad()
def generate(model: LatentDiffusion, num: int | None = None, *, labels: Tensor | None = None,
             prompts: list[str] | None = None, sampler: str = "dpmpp_2m", steps: int = 20,
             guidance_scale: float = 1.0, generator: torch.Generator | None = None,
             progress: bool = False) -> Tensor:
    """Images ``[N, C, H, W]`` in [-1, 1]: noise -> sampler (with CFG when ``guidance_scale != 1``) -> decoder.

    N is ``len(labels)`` or ``len(prompts)`` for conditional models, ``num`` for unconditional ones. Noise is
    drawn from ``generator`` (a CPU generator gives the same images on every device)."""
    num = len(labels) if labels is not None else len(prompts) if prompts is not None else num
    if num is None:
        raise ValueError("say how many images to draw: pass num=..., or labels / prompts (one image each).")
    cond = model.condition(labels=labels, prompts=prompts)
    guided = guidance_scale != 1.0
    if guided and model.conditioning is Conditioning.NONE:
        raise ValueError(f"{model.preset.name} is unconditional: classifier-free guidance needs a condition. "
                         "Use guidance_scale=1.")
    device = model.latent_scale.device
    noise = torch.randn(num, *model.latent_shape, generator=generator).to(device)
    x0 = sample(model, noise, sampler=sampler, steps=steps, schedule=model.schedule,
                prediction=model.preset.prediction.value, clip_x0=1.0 if model.first_stage is None else None,
                guidance_scale=guidance_scale, cond=cond, uncond=model.null_condition(num) if guided else None,
                generator=generator, progress=progress)
    return model.decode(x0).clamp(-1, 1)


def generate_like(model: LatentDiffusion, batch: dict, *, sampler: str = "dpmpp_2m", steps: int = 20,
                  guidance_scale: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """One image per item of a data batch, drawn with the item's own label or caption (what the model is
    conditioned on; unconditional models ignore both, and guidance)."""
    kind = model.conditioning
    labels = torch.as_tensor(batch["label"]) if kind is Conditioning.CLASS else None
    prompts = list(batch["caption"]) if kind is Conditioning.TEXT else None
    guidance = guidance_scale if kind is not Conditioning.NONE else 1.0
    return generate(model, len(batch["image"]), labels=labels, prompts=prompts, sampler=sampler, steps=steps,
                    guidance_scale=guidance, generator=generator)


@dataclass(frozen=True)
class DiffusionTask:
    """LDM's objective (eq. 2; eq. 1 in pixel space) for the trainer: encode with the frozen first stage, drop
    conditions for CFG, and regress the preset's target (eps or v) at a uniformly drawn timestep.

    On the first batch of a run whose preset has no fixed latent scale, the scale is measured as LDM's
    ``scale_by_std`` (App. G); it lives in the model's ``latent_scale`` buffer, so checkpoints keep it."""

    sample_labels: tuple[int, ...] | None = None   # class models: the labels of the trainer's sample grids
    sample_prompts: tuple[str, ...] | None = None  # text models: the prompts of the sample grids
    sample_num: int = 16                           # unconditional models: images per grid
    sampler: str = "dpmpp_2m"                      # sampler of the grids (a name in ldm_lab.diffusion.SAMPLERS)
    sample_steps: int = 20                         # its number of steps
    guidance_scale: float = 1.0                    # CFG scale of the grids (1: no guidance)

    def loss(self, model: LatentDiffusion, batch: dict) -> Tensor:
        images = batch["image"]
        if model.needs_latent_scale:
            model.set_latent_scale_from(images)
        cond = model.condition(**drop_conditions(model, batch, model.config.condition_dropout))
        objective = DiffusionLoss(model.schedule, model.preset.prediction.value, model.config.snr_gamma)
        return objective(model, model.encode(images), **cond)

    def sample(self, model: LatentDiffusion) -> Tensor:
        labels = torch.tensor(self.sample_labels) if self.sample_labels is not None else None
        prompts = list(self.sample_prompts) if self.sample_prompts is not None else None
        guidance = self.guidance_scale if model.conditioning is not Conditioning.NONE else 1.0
        return generate(model, self.sample_num, labels=labels, prompts=prompts, sampler=self.sampler,
                        steps=self.sample_steps, guidance_scale=guidance)
