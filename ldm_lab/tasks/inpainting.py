"""Inpainting two ways (LDM §4.5; SD 1.5-inpainting): a model trained to see the mask and the masked image
(``lab-sd1-inpaint``: 9 input channels), against mask blending with the text model it was fine-tuned from (any
model: after every sampler step the known region is replaced by the image noised to the same level,
``ldm_lab.diffusion.ImageEdit``).

Masks are (b, 1, H, W) at image size, 1 where new content is generated, 0 where the image is kept. The random
masks here are rectangles on the first stage's grid (so a latent cell is either masked or not), as SD's training
masks include boxes (its others are LaMa's brush strokes); a quarter of training masks cover the whole image, as
SD-inpainting's did, so the model stays a text-to-image model too.

    masks = random_masks(8, (64, 64), cell=4, generator=torch.Generator().manual_seed(0))
    filled = inpaint(inpainter, images, masks, prompts)                  # the 9-channel model
    blended = inpaint_by_blending(text_model, images, masks, prompts)    # the text model, mask blending
    seams = seam_energy(filled, masks)                                   # gradient energy across the boundary
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ldm_lab.conditioning.inpainting import INPAINT_KEY
from ldm_lab.device import model_device
from ldm_lab.diffusion import ImageEdit, SamplingSettings
from ldm_lab.models import LatentDiffusion
from ldm_lab.tasks.diffusion import DiffusionTask, generate

FULL_MASK_RATE = 0.25  # SD-inpainting: "in 25% we mask everything"
INPUT_CONV = "unet.conv_in.weight"  # the only weight that sees the U-Net's input channels


def widened_input(source: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """``source``'s weights for ``model``, whose U-Net takes more input channels than the source's (SD
    1.5-inpainting from SD 1.5): the new channels' weights in ``conv_in`` start at zero, as RunwayML initialised
    theirs, so the widened model starts out computing exactly what its source computed."""
    weight, wanted = source[INPUT_CONV], model.state_dict()[INPUT_CONV]
    if weight.shape[0] != wanted.shape[0] or weight.shape[2:] != wanted.shape[2:] or weight.shape[1] > wanted.shape[1]:
        raise ValueError(f"{INPUT_CONV} is {tuple(weight.shape)} in the source and {tuple(wanted.shape)} here: only "
                         "more input channels can be added (the same widths and kernel otherwise).")
    extra = wanted.shape[1] - weight.shape[1]
    return {**source, INPUT_CONV: torch.cat([weight, weight.new_zeros(weight.shape[0], extra, *weight.shape[2:])],
                                            dim=1)}


def random_masks(num: int, size: tuple[int, int], cell: int = 1, side: tuple[float, float] = (0.3, 0.7),
                 full_rate: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """(num, 1, H, W) masks: one rectangle each, its sides a uniform ``side`` fraction of the image's, placed
    uniformly, both snapped to multiples of ``cell`` pixels (the first stage's f); with probability ``full_rate`` the
    whole image instead."""
    height, width = size
    if height % cell or width % cell:
        raise ValueError(f"image size {size} is not a multiple of the mask cell {cell}; use the first stage's f.")
    rows, cols = height // cell, width // cell
    masks = torch.zeros(num, 1, rows, cols)
    for i in range(num):
        if float(torch.rand((), generator=generator)) < full_rate:
            masks[i] = 1
            continue
        fractions = torch.empty(2).uniform_(*side, generator=generator)
        h, w = max(1, round(float(fractions[0]) * rows)), max(1, round(float(fractions[1]) * cols))
        top = int(torch.randint(rows - h + 1, (), generator=generator))
        left = int(torch.randint(cols - w + 1, (), generator=generator))
        masks[i, 0, top: top + h, left: left + w] = 1
    return masks.repeat_interleave(cell, dim=2).repeat_interleave(cell, dim=3)


def latent_mask(model: LatentDiffusion, masks: Tensor) -> Tensor:
    """The mask at the latent's resolution: a latent cell is masked if any of its f x f pixels is."""
    f = model.downsampling_factor
    return F.max_pool2d(masks.float(), f) if f > 1 else masks.float()


@torch.no_grad()
def inpainting_input(model: LatentDiffusion, images: Tensor, masks: Tensor) -> Tensor:
    """The ``inpaint`` condition (b, 1 + C, h, w): the latent-size mask, then the latent of the masked image (the
    masked pixels set to 0, mid-grey, as SD's ``image * (mask < 0.5)``)."""
    if masks.shape[0] != images.shape[0] or masks.shape[1] != 1 or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"masks must be (b, 1, H, W) like the images {tuple(images.shape)}; got "
                         f"{tuple(masks.shape)}. Make them with random_masks(b, (H, W)).")
    masks = masks.to(images)
    return torch.cat([latent_mask(model, masks), model.encode(images * (1 - masks))], dim=1)


@dataclass(frozen=True)
class InpaintingTask(DiffusionTask):
    """LDM's objective for an inpainting model: each training image gets a random mask (a quarter of them the whole
    image), and the U-Net sees the mask and the masked image's latent beside the noisy latent."""

    full_mask_rate: float = FULL_MASK_RATE

    def training_inputs(self, model: LatentDiffusion, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        z0 = self.clean_latents(model, batch)  # measures the latent scale on a fresh run's first batch
        images = batch["image"]
        masks = random_masks(len(images), tuple(images.shape[-2:]), cell=model.downsampling_factor,
                             full_rate=self.full_mask_rate)
        batch = {**batch, INPAINT_KEY: inpainting_input(model, images, masks)}
        return z0, model.condition(self.with_aliases(batch), len(z0), dropout=True)

    def batch_fields(self, model: LatentDiffusion) -> tuple[str, ...]:
        return (*super().batch_fields(model), "image")

    def sample(self, model: LatentDiffusion) -> Tensor:
        """The sample grid: the prompts in a centred square hole of a mid-grey image (nothing to copy)."""
        num = self.sample_num
        prompts = [self.sample_prompts[i % len(self.sample_prompts)] for i in range(num)]
        images = torch.zeros(num, *model.image_shape)
        masks = centre_masks(num, model.preset.resolution)
        return inpaint(model, images.to(model_device(model)), masks.to(model_device(model)), prompts, self.sampling)


def centre_masks(num: int, size: tuple[int, int], fraction: float = 0.5) -> Tensor:
    """(num, 1, H, W): a centred square hole, ``fraction`` of each side."""
    height, width = size
    h, w = round(height * fraction), round(width * fraction)
    masks = torch.zeros(num, 1, height, width)
    masks[:, :, (height - h) // 2: (height - h) // 2 + h, (width - w) // 2: (width - w) // 2 + w] = 1
    return masks


@torch.no_grad()
def inpaint(model: LatentDiffusion, images: Tensor, masks: Tensor, prompts: list[str],
            settings: SamplingSettings = SamplingSettings(), generator: torch.Generator | None = None) -> Tensor:
    """Fill the masked region with the inpainting model (images [-1, 1], masks 1 = fill): its output as it is,
    the known region redrawn by the model (SD's pipeline returns it so; ``paste`` puts the original back)."""
    if INPAINT_KEY not in model.condition_keys:
        raise ValueError(f"{model.preset.name} is not an inpainting model (it takes no mask): use "
                         "inpaint_by_blending(model, ...) for it, or an inpainting model such as lab-sd1-inpaint.")
    conditions = {INPAINT_KEY: inpainting_input(model, images, masks)}
    return generate(model, prompts=list(prompts), conditions=conditions, settings=settings, generator=generator)


@torch.no_grad()
def inpaint_by_blending(model: LatentDiffusion, images: Tensor, masks: Tensor, prompts: list[str],
                        settings: SamplingSettings = SamplingSettings(),
                        generator: torch.Generator | None = None) -> Tensor:
    """Fill the masked region with any text model by mask blending (LDM §4.5's baseline): after every step the
    known region of the latent is replaced by the image's latent noised to the next level."""
    latents = model.encode(images)
    edit = ImageEdit(latents, mask=latent_mask(model, masks.to(latents)))
    return generate(model, prompts=list(prompts), settings=settings, generator=generator, edit=edit)


def paste(generated: Tensor, images: Tensor, masks: Tensor) -> Tensor:
    """The generated pixels inside the mask, the original ones outside."""
    return masks * generated + (1 - masks) * images


def boundary(masks: Tensor, width: int = 1) -> Tensor:
    """(b, 1, H, W) bool: pixels within ``width`` of the mask's edge, on either side."""
    grown = F.max_pool2d(masks.float(), 2 * width + 1, stride=1, padding=width)
    shrunk = -F.max_pool2d(-masks.float(), 2 * width + 1, stride=1, padding=width)
    return (grown - shrunk) > 0


def seam_energy(images: Tensor, masks: Tensor, width: int = 1) -> Tensor:
    """(b,): the mean squared image gradient (finite differences, summed over colour) on the mask's boundary band,
    after pasting into the original: a visible seam is a jump in colour there. Compare with the same measure on
    the real images (their own gradients across the same band)."""
    dy = F.pad((images[:, :, 1:] - images[:, :, :-1]).pow(2).sum(1, keepdim=True), (0, 0, 0, 1))
    dx = F.pad((images[..., 1:] - images[..., :-1]).pow(2).sum(1, keepdim=True), (0, 1, 0, 0))
    band = boundary(masks, width).float()
    return ((dx + dy) * band).sum((1, 2, 3)) / band.sum((1, 2, 3)).clamp(min=1)
