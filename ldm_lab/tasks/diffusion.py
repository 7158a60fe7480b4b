"""The diffusion training task (LDM eq. 2) and image generation with classifier-free guidance.

    task = DiffusionTask(sample_labels=tuple(range(10)))
    train(model, task, data, config, run_dir)       # loss: ||target - eps_theta(z_t, t, tau(y))||^2
    images = generate(model, labels=torch.tensor([3, 7]), settings=SamplingSettings(guidance_scale=3.0))
    images = generate(model, conditions={"boxes": [...], "box_labels": [...]})   # any data-batch conditions
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ldm_lab.conditioning import record_cross_attention, token_maps
from ldm_lab.data.batching import split_aliases
from ldm_lab.device import model_device
from ldm_lab.diffusion import DiffusionLoss, ImageEdit, SamplingSettings, sample
from ldm_lab.diffusion.parameterisation import add_noise
from ldm_lab.models import LatentDiffusion
from ldm_lab.tasks.latent_cache import has_cached_latents, sample_latents


SIZE_KEYS = ("original_size", "target_size")  # SDXL's size conditions: the image size asked for, by default


def request(labels: Tensor | None = None, prompts: list[str] | None = None,
            conditions: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One conditions dict, in the data batch's keys: ``labels`` -> ``label``, ``prompts`` -> ``caption``."""
    batch = dict(conditions or {})
    if labels is not None:
        batch["label"] = torch.as_tensor(labels)
    if prompts is not None:
        batch["caption"] = [prompts] if isinstance(prompts, str) else list(prompts)
    return batch


def check_concat(model: LatentDiffusion, cond: Mapping[str, Tensor]) -> None:
    """A concatenated condition (a segmentation map) must cover the latent the model samples."""
    if "concat" in cond and tuple(cond["concat"].shape[-2:]) != model.latent_shape[1:]:
        (height, width), f = model.preset.resolution, model.downsampling_factor
        raise ValueError(f"the concatenated condition is {tuple(cond['concat'].shape[-2:])} at the latent's resolution "
                         f"(maps of {tuple(f * s for s in cond['concat'].shape[-2:])} pixels), but {model.preset.name} "
                         f"samples {height}x{width} images: pass maps of {height}x{width}.")


@torch.no_grad()
def generate(model: LatentDiffusion, num: int | None = None, *, labels: Tensor | None = None,
             prompts: list[str] | None = None, conditions: Mapping[str, Any] | None = None,
             settings: SamplingSettings = SamplingSettings(), generator: torch.Generator | None = None,
             progress: bool = False, size: tuple[int, int] | None = None, decode: bool = True,
             edit: ImageEdit | None = None) -> Tensor:
    """Images ``[N, C, H, W]`` in [-1, 1]: noise -> sampler (with CFG when ``settings.guidance_scale != 1``) ->
    decoder (``decode=False``: the sampled latents z0, as the U-Net drew them). ``size``: (H, W), default the preset's resolution; other sizes need a ``multi_aspect`` model, and a
    model conditioned on sizes then gets ``target_size`` and ``original_size`` = ``size`` unless given (SDXL's
    sampling default).

    Conditions are ``labels``, ``prompts``, or any data-batch fields in ``conditions`` (``boxes`` and
    ``box_labels``, ``segmentation``, ``original_size`` ...); N is their count, or ``num`` for unconditional
    models. Noise is drawn from ``generator``, else from ``settings.seed`` (a CPU generator: the same images on
    every device), else from torch's global generator. ``edit``: start from given latents instead of noise
    (SDEdit by strength, inpainting by mask blending; ``ldm_lab.diffusion.ImageEdit``)."""
    batch = request(labels, prompts, conditions)
    model.check_request(batch)
    size = tuple(model.preset.resolution) if size is None else tuple(size)
    latent_shape = model.latent_shape_at(size)
    num = num if not batch else model.count(batch)
    if num is None:
        raise ValueError("say how many images to draw: pass num=..., or labels / prompts (one image each).")
    guided = settings.guidance_scale != 1.0
    if guided and not model.is_conditional:
        raise ValueError(f"{model.preset.name} is unconditional: classifier-free guidance needs a condition. "
                         "Use guidance_scale=1.")
    generator = settings.generator() if generator is None else generator
    if size != tuple(model.preset.resolution):
        batch = {**{key: torch.tensor([size] * num) for key in SIZE_KEYS if key in model.condition_keys}, **batch}
    cond = model.condition(batch, num)
    check_concat(model, cond)
    device = model_device(model)
    noise = torch.randn(num, *latent_shape, generator=generator).to(device)
    x0 = sample(model, noise, settings, schedule=model.schedule, prediction=model.preset.prediction.value,
                clip_x0=1.0 if model.first_stage is None else None, cond=cond,
                uncond=model.unconditional(batch, num) if guided else None, edit=edit, generator=generator,
                progress=progress)
    return model.decode(x0).clamp(-1, 1) if decode else x0


@torch.no_grad()
def cross_attention(model: LatentDiffusion, images: Tensor, conditions: Mapping[str, Any], timestep: int = 500,
                    size: tuple[int, int] | None = None, generator: torch.Generator | None = None) -> Tensor:
    """(b, tokens, h, w): where each conditioning token is attended while the model denoises ``images`` noised
    to ``timestep`` (one U-Net pass; every cross-attention layer's map, resized to ``size``, default the image's,
    and averaged). Label the tokens with ``ldm_lab.conditioning.token_strings``."""
    z0 = model.encode(images)
    t = torch.full((len(images),), timestep, device=z0.device)
    eps = torch.randn(z0.shape, generator=generator).to(z0.device)
    x_t = add_noise(z0, eps, model.schedule.alpha_bar_at(t).view(-1, 1, 1, 1))
    cond = model.condition(conditions, len(images))
    with record_cross_attention(model.unet) as maps:
        model(x_t, t, **cond)
    return token_maps(maps, size or tuple(images.shape[-2:]))


def conditions_of(model: LatentDiffusion, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a data batch that ``model`` is conditioned on."""
    return {key: batch[key] for key in model.condition_keys if key in batch}


def generate_like(model: LatentDiffusion, batch: dict, *, settings: SamplingSettings = SamplingSettings(),
                  generator: torch.Generator | None = None) -> Tensor:
    """One image per item of a data batch, drawn with the item's own conditions (label, caption, boxes, map,
    sizes: whatever the model is conditioned on; unconditional models ignore them, and guidance)."""
    return generate(model, len(batch["image"]), conditions=conditions_of(model, batch),
                    settings=settings_for(model, settings), generator=generator)


def settings_for(model: LatentDiffusion, settings: SamplingSettings) -> SamplingSettings:
    """``settings`` without guidance for an unconditional model (there is nothing to guide towards)."""
    return settings if model.is_conditional else dataclasses.replace(settings, guidance_scale=1.0)


@dataclass(frozen=True)
class DiffusionTask:
    """LDM's objective (eq. 2; eq. 1 in pixel space) for the trainer: encode with the frozen first stage, drop
    conditions for CFG, and regress the preset's target (eps or v) at a uniformly drawn timestep.

    On the first batch of a run whose preset has no fixed latent scale, the scale is measured as LDM's
    ``scale_by_std`` (App. G); it lives in the model's ``latent_scale`` buffer, so checkpoints keep it."""

    sample_labels: tuple[int, ...] | None = None   # class models: the labels of the trainer's sample grids
    sample_prompts: tuple[str, ...] | None = None  # text models: the prompts of the sample grids
    sample_conditions: dict[str, Any] = field(default_factory=dict, compare=False)  # other models: a collated
                                                   # batch of conditions (e.g. validation boxes) for the grids
    sample_num: int = 16                           # unconditional models: images per grid
    guidance_scale: float = 1.0                    # the CFG scale this model is sampled at (grids, and the
                                                   # default of eval and bench); 1: no guidance
    alias_rate: float = 0.0                        # text models: the chance that a training prompt is one of
                                                   # its item's other names (its "aliases": "pizza" for "slice of
                                                   # pizza") instead of the caption; 0: captions only

    def __post_init__(self) -> None:
        if not 0.0 <= self.alias_rate <= 1.0:
            raise ValueError(f"alias_rate is a probability, not {self.alias_rate}: give a value in [0, 1].")

    @property
    def sampling(self) -> SamplingSettings:
        """How this model's images are drawn by default: the package's sampler and steps, its guidance."""
        return SamplingSettings(guidance_scale=self.guidance_scale)

    def loss(self, model: LatentDiffusion, batch: dict) -> Tensor:
        z0, cond = self.training_inputs(model, batch)
        return self.objective(model)(model, z0, **cond)

    def training_inputs(self, model: LatentDiffusion, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """(z0, conditions) of a training batch: its clean latents and its conditions, dropped for CFG."""
        z0 = self.clean_latents(model, batch)
        return z0, model.condition(self.with_aliases(batch), len(z0), dropout=True)

    @staticmethod
    def objective(model: LatentDiffusion) -> DiffusionLoss:
        """The denoising loss ``model`` trains with: its schedule, prediction, min-SNR and timestep range."""
        return DiffusionLoss(model.schedule, model.preset.prediction.value, model.config.snr_gamma,
                             model.config.timestep_range)

    def batch_fields(self, model: LatentDiffusion) -> tuple[str, ...]:
        """The item fields a training step reads besides the image: the model's conditions, and the aliases its
        prompts are drawn from. A latent cache keeps only these in memory (a Shapes scene's maps are 40 KB)."""
        return (*model.condition_keys, *(("aliases",) if self.alias_rate else ()))

    def with_aliases(self, batch: dict) -> dict:
        """``batch`` with each caption replaced, at ``alias_rate``, by one of its item's aliases drawn uniformly
        (torch's generator, so a seeded run draws the same). Items without aliases keep their caption: the
        model learns the names people type as well as the dataset's formal ones."""
        if not self.alias_rate or "aliases" not in batch:
            return batch
        captions = []
        for caption, aliases in zip(batch["caption"], batch["aliases"], strict=True):
            names = split_aliases(aliases)
            if names and float(torch.rand(())) < self.alias_rate:
                caption = names[int(torch.randint(len(names), ()))]
            captions.append(caption)
        return {**batch, "caption": captions}

    @staticmethod
    def clean_latents(model: LatentDiffusion, batch: dict) -> Tensor:
        """z0 of a batch: drawn from its cached first-stage posteriors (``ldm_lab.tasks.latent_cache``), or
        encoded from its images (measuring the latent scale on the first batch, LDM App. G)."""
        if has_cached_latents(batch):
            return sample_latents(batch, model.latent_scale)
        images = batch["image"]
        if model.needs_latent_scale:
            model.set_latent_scale_from(images)
        return model.encode(images)

    def sample(self, model: LatentDiffusion) -> Tensor:
        conditions = request(torch.tensor(self.sample_labels) if self.sample_labels is not None else None,
                             self.sample_prompts, self.sample_conditions)
        return generate(model, self.sample_num, conditions=conditions, settings=settings_for(model, self.sampling))
