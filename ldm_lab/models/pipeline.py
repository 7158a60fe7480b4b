"""The latent diffusion pipeline as a list of stages with the shapes of real tensors (LDM §3, Fig. 3): one
training step's forward pass and the decoder, read off a model by running it, never written by hand.

    stages = pipeline_stages(model, batch)          # image -> E -> latent -> scaled -> noised -> U-Net -> D
    ldm_lab.plotting.pipeline_diagram(stages)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ldm_lab.device import model_device
from ldm_lab.diffusion.parameterisation import add_noise, append_dims, prediction_to_x0
from ldm_lab.models.latent_diffusion import LatentDiffusion


@dataclass(frozen=True)
class Stage:
    """One tensor of the pipeline."""

    name: str                # what the tensor is, e.g. "scaled latent z0"
    shape: tuple[int, ...]   # its shape, batch first
    made_by: str             # the operation that made it, e.g. "encoder E" ("" for the input)


def shape_text(shape: tuple[int, ...]) -> str:
    """``(1, 4, 8, 8)`` -> ``"1x4x8x8"``."""
    return "x".join(map(str, shape))


@torch.no_grad()
def pipeline_stages(model: LatentDiffusion, batch: Mapping[str, Any], timestep: int = 500,
                    seed: int = 0) -> list[Stage]:
    """Run ``batch`` (``image`` [B, C, H, W] in [-1, 1] and the model's conditions) through ``model`` as one
    training step sees it, then decode the U-Net's estimate of z0, recording every tensor's shape: the image,
    E(x), z0 = scale * E(x) (App. G), z_t at ``timestep`` (eq. 1's forward process), the condition, each U-Net
    level's features on the way down (before its downsampling) and the middle block's, the U-Net's prediction,
    and D(z0_hat / scale)."""
    model = model.eval()
    device = model_device(model)
    images = batch["image"].to(device)
    stages = [Stage("image x", tuple(images.shape), "")]
    if model.first_stage is not None:
        stages.append(Stage("latent E(x)", tuple(model.raw_latents(images).shape), "encoder E"))
    z0 = model.encode(images)
    stages.append(Stage(f"scaled latent z0 (x {float(model.latent_scale):.3g})", tuple(z0.shape),
                        "multiply by the latent scale"))
    generator = torch.Generator().manual_seed(seed)
    t = torch.full((len(z0),), timestep, device=device, dtype=torch.long)
    alpha_bar = append_dims(model.schedule.alpha_bar_at(t), z0.ndim)
    z_t = add_noise(z0, torch.randn(z0.shape, generator=generator).to(device), alpha_bar)
    stages.append(Stage(f"noised latent z_t (t = {timestep})", tuple(z_t.shape), "add noise (forward process)"))
    conditions = model.condition(batch, len(z0)) if model.is_conditional else {}
    stages += [Stage(f"condition {key}", tuple(value.shape), "conditioner tau")
               for key, value in conditions.items() if isinstance(value, Tensor)]
    levels: list[tuple[int, ...]] = []  # each down level's last block (before its downsampling), then the middle
    hooks = [module.register_forward_hook(lambda _module, _inputs, output: levels.append(tuple(output.shape)))
             for module in [level.blocks[-1] for level in model.unet.down] + [model.unet.middle]]
    try:
        output = model(z_t, t, **conditions)
    finally:
        for hook in hooks:
            hook.remove()
    stages += [Stage(f"U-Net level {i} (down)", shape, "downsample, ResBlocks" if i else "conv_in, ResBlocks")
               for i, shape in enumerate(levels[:-1])]
    stages.append(Stage("U-Net middle", levels[-1], "middle block"))
    prediction = model.preset.prediction.value
    stages.append(Stage(f"U-Net output ({prediction})", tuple(output.shape), "U-Net up levels"))
    z0_hat = prediction_to_x0(output, prediction, z_t, alpha_bar)
    stages.append(Stage("decoded image D(z0_hat / scale)", tuple(model.decode(z0_hat).shape),
                        "divide by the scale, decoder D" if model.first_stage is not None else "identity"))
    return stages
