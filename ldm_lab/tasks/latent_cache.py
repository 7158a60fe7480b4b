"""The frozen first stage's latents, encoded once before training instead of at every step.

A latent diffusion model never changes its first stage (LDM §3.3: E and D are trained first, then frozen), so
encoding every training image at every step repeats the same work each epoch. On a CPU that work is most of a
small model's step. We encode the training set once and keep, per item, what the encoder's output *distribution*
is, so that each step still draws a fresh latent as LDM's ``get_first_stage_encoding`` does:

* KL first stage: the posterior's mean and standard deviation, z = mean + std * eps drawn anew every step;
* VQ first stage: the pre-quantisation latent (``quant_conv(encoder(x))``, LDM's choice), deterministic (std 0).

Every other field of an item (caption, label, boxes, segmentation, sizes) is served unchanged, so conditions
work as before. The image itself is dropped: the task reads ``latent_mean`` / ``latent_std`` instead.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ldm_lab.device import model_device
from ldm_lab.models import LatentDiffusion
from ldm_lab.nn.distributions import DiagonalGaussian

MEAN, STD = "latent_mean", "latent_std"  # the batch keys of a cached latent's distribution


@torch.no_grad()
def latent_moments(model: LatentDiffusion, images: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of E(x) (unscaled; std is 0 for a VQ first stage's deterministic latent)."""
    model.check_images(images)
    first_stage = model.first_stage.eval()  # frozen, so always in eval mode (LatentDiffusion.train); a model fresh
    # from its constructor is not yet, and a VQ first stage trained with code restarts would restart codes here
    if first_stage.quantizer is not None:
        latent = model.raw_latents(images)
        return latent, torch.zeros_like(latent)
    posterior: DiagonalGaussian = first_stage.encode(images)
    return posterior.mean, posterior.std


def has_cached_latents(batch: dict) -> bool:
    return MEAN in batch


def sample_latents(batch: dict, scale: Tensor) -> Tensor:
    """z0 = scale * (mean + std * eps): a fresh draw of each cached posterior (LDM's ``scale_by_std`` scale)."""
    mean, std = batch[MEAN], batch[STD]
    return scale * (mean + std * torch.randn_like(mean))


class LatentCache(Dataset):
    """``data`` with each image replaced by its first-stage latent distribution, encoded once by ``model``.

    A model whose latent scale is not measured yet gets it here, as 1 / std of latents drawn for the first
    ``scale_items`` items (LDM's ``scale_by_std`` measures it on the first training batch; more items give the
    same quantity with less noise)."""

    def __init__(self, model: LatentDiffusion, data: Dataset, batch_size: int = 256, scale_items: int = 1024,
                 progress: bool = True) -> None:
        if model.first_stage is None:
            raise ValueError(f"{model.preset.name} works in pixel space: it has no first stage whose latents could "
                             "be cached. Train it on the images themselves.")
        if len(data) == 0:
            raise ValueError("a latent cache needs a dataset of items with an 'image' field; this one is empty.")
        device = model_device(model)
        self.fields, means, stds = [], [], []
        # Batch by batch: only ``batch_size`` images are in memory at once (50,000 Shapes scenes are 2.4 GB).
        for start in tqdm(range(0, len(data), batch_size), desc="encode latents", disable=not progress):
            items = [data[i] for i in range(start, min(start + batch_size, len(data)))]
            if "image" not in items[0]:
                raise ValueError("a latent cache needs a dataset of items with an 'image' field.")
            self.fields += [{k: v for k, v in item.items() if k != "image"} for item in items]
            mean, std = latent_moments(model, torch.stack([item["image"] for item in items]).to(device))
            means.append(mean.cpu())
            stds.append(std.cpu())
        self.mean, self.std = torch.cat(means), torch.cat(stds)
        if model.needs_latent_scale:
            first = {MEAN: self.mean[:scale_items], STD: self.std[:scale_items]}
            model.latent_scale.fill_(1.0 / sample_latents(first, torch.tensor(1.0)).float().std().item())

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, index: int) -> dict:
        return {**self.fields[index], MEAN: self.mean[index], STD: self.std[index]}
