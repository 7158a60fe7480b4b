"""The latent diffusion model (Rombach et al. 2022, §3.3): a frozen first stage E/D, a conditioner, a U-Net
eps_theta(z_t, t, tau(y)) and its noise schedule, in one module.

    model = LatentDiffusion(LatentDiffusionConfig("lab-emoji"))
    z0 = model.encode(images)                           # scale * E(x), about unit variance
    cond = model.condition({"caption": ["red apple"]})  # {"context": (1, 77, 128)}
    images = model.decode(z0)                           # D(z0 / scale)

Conditions come as a data batch (``label``, ``caption``, ``boxes`` + ``box_labels``, ``segmentation``,
``original_size`` / ``crop_top_left`` / ``target_size``): training, ``generate`` and the notebooks pass the same
structure, and the conditioner (``ldm_lab.conditioning``) turns it into the U-Net's context, y and concat.

A preset without an autoencoder (``lab-pixel``, ``lab-class``) works in pixel space: encode and decode are the
identity. The latent scale is a buffer, so it is saved in every checkpoint and a resumed run or a sampler uses
the value the run started with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from ldm_lab.conditioning import ClassEmbedder, Conditioner
from ldm_lab.diffusion import NoiseSchedule, make_schedule
from ldm_lab.diffusion.losses import check_timestep_range
from ldm_lab.nn.autoencoder import Autoencoder
from ldm_lab.nn.distributions import DiagonalGaussian
from ldm_lab.nn.unet import UNet
from ldm_lab.presets import Preset, conditioner_config, get_preset

REQUEST_NAMES = {"caption": "prompts", "label": "class labels", "boxes": "boxes", "box_labels": "box labels",
                 "segmentation": "segmentation maps"}  # how error messages name a batch key


class VQLatents(Enum):
    """Which latent of a VQ first stage the diffusion model learns."""

    PRE_QUANTISATION = "pre_quantisation"  # quant_conv(encoder(x)), as LDM; the decoder quantises (LDM §3.1)
    QUANTISED = "quantised"                # the codebook vectors the quantiser snaps them to


@dataclass(frozen=True)
class LatentDiffusionConfig:
    """A trainable latent (or pixel) diffusion model built from a preset."""

    preset: str | Preset             # a preset with a U-Net: its networks, prediction, schedule and latent scale;
                                     # its name, or a Preset (a named one changed with dataclasses.replace)
    condition_dropout: float = 0.1   # share of training conditions replaced by "no condition", so that one
                                     # network also learns the unconditional model CFG needs (Ho & Salimans 2022)
    train_text_encoder: bool = True  # LDM §4.3 trains its text transformer jointly; SD freezes CLIP (False)
    snr_gamma: float | None = None   # min-SNR-gamma loss weighting (Hang et al. 2023); None: DDPM's plain loss
    timestep_range: tuple[int, int] | None = None  # train on timesteps [low, high) only: a low-noise expert, as
                                     # SDXL's refiner on (0, 200) (§2.5); None: all of them
    vq_latents: VQLatents = VQLatents.PRE_QUANTISATION  # VQ first stages only: latents before quantisation
                                     # (LDM's LatentDiffusion on a VQModelInterface) or the quantised codes
    multi_aspect: bool = False       # accept images of any size whose sides are multiples of ``size_multiple``
                                     # (SDXL §2.3's aspect buckets); False: only the preset's resolution

    def __post_init__(self) -> None:
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"condition_dropout is a probability in [0, 1), got {self.condition_dropout}; "
                             "0.1 is LDM/SD's usual value, 0 trains no unconditional model (no guidance).")


def _check_trainable(preset: Preset) -> None:
    if preset.unet is None:
        raise ValueError(f"preset {preset.name!r} has no U-Net: it is a first stage alone. Train autoencoders "
                         "with the lab-autoencoder target, and diffusion with a preset such as lab-class.")


class LatentDiffusion(nn.Module):
    """First stage (frozen) + conditioner + U-Net. ``forward`` is the U-Net, so the module itself is the
    ``model_fn(x_t, t, **cond)`` that ``ldm_lab.diffusion.sample`` and ``DiffusionLoss`` call."""

    def __init__(self, config: LatentDiffusionConfig) -> None:
        super().__init__()
        preset = get_preset(config.preset)
        _check_trainable(preset)
        self.config, self.preset = config, preset
        self.unet = UNet(preset.unet)
        self.first_stage = Autoencoder(preset.autoencoder).requires_grad_(False) if preset.autoencoder else None
        conditions = conditioner_config(preset, config.condition_dropout, config.train_text_encoder)
        conditions.check(preset.unet, self.latent_channels)
        self.conditioner = Conditioner(conditions)
        # NaN: not measured yet; set from the first training batch by ``set_latent_scale_from`` (LDM App. G).
        scale = 1.0 if self.first_stage is None else (preset.latent_scale or math.nan)
        self.register_buffer("latent_scale", torch.tensor(scale))
        self.schedule: NoiseSchedule = make_schedule(preset.schedule.value, preset.num_train_timesteps,
                                                     zero_terminal_snr=preset.zero_terminal_snr)
        check_timestep_range(config.timestep_range, preset.num_train_timesteps)

    # -- first stage ----------------------------------------------------------------------------------------

    @property
    def latent_channels(self) -> int:
        """Channels of what the U-Net denoises (its input adds any concatenated condition)."""
        preset = self.preset
        return preset.unet.out_channels if preset.autoencoder is None else preset.autoencoder.embed_dim

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of what the U-Net denoises, at the preset's resolution."""
        height, width = self.preset.resolution
        if self.first_stage is None:
            return self.latent_channels, height, width
        f = self.first_stage.config.downsampling_factor
        return self.latent_channels, height // f, width // f

    @property
    def downsampling_factor(self) -> int:
        """f of the first stage: image pixels per latent pixel along each side (1 for a pixel-space model)."""
        return 1 if self.first_stage is None else self.first_stage.config.downsampling_factor

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: the first stage's f times the U-Net's total downsampling (each
        level but the last halves the latent), so every level's skip connection meets a feature map of its size."""
        return self.downsampling_factor * 2 ** (len(self.preset.unet.channel_mult) - 1)

    def latent_shape_at(self, size: tuple[int, int]) -> tuple[int, int, int]:
        """(channels, height, width) of the latent of a ``size`` (height, width) image: ``latent_shape`` at the
        preset's resolution; other sizes only for a ``multi_aspect`` model."""
        self.check_size(tuple(size))
        f = self.downsampling_factor
        return self.latent_channels, size[0] // f, size[1] // f

    def check_size(self, size: tuple[int, int]) -> None:
        """An error that says which image sizes this model takes, for one it does not."""
        if tuple(size) == tuple(self.preset.resolution):
            return
        if not self.config.multi_aspect:
            h, w = self.preset.resolution
            raise ValueError(f"{self.preset.name} is built for {h}x{w} images, not {size[0]}x{size[1]}. Build the "
                             f"dataset at {h}x{w}, or train with LatentDiffusionConfig(multi_aspect=True) to take "
                             "other sizes (SDXL's aspect buckets).")
        m = self.size_multiple
        if size[0] % m or size[1] % m or min(size) < m:
            raise ValueError(f"image sides must be multiples of {m} (the first stage's f x the U-Net's "
                             f"downsampling), not {size[0]}x{size[1]}; the aspect buckets of ldm_lab.data.buckets are.")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images the model is trained on."""
        channels = self.latent_channels if self.first_stage is None else self.first_stage.config.in_channels
        return (channels, *self.preset.resolution)

    @property
    def needs_latent_scale(self) -> bool:
        return bool(torch.isnan(self.latent_scale))

    @torch.no_grad()
    def raw_latents(self, images: Tensor) -> Tensor:
        """E(x): a posterior sample (KL, as LDM's ``get_first_stage_encoding``). VQ: by default the latent before
        quantisation, ``quant_conv(encoder(x))``, as LDM's ``VQModelInterface.encode`` (``decode`` quantises);
        ``vq_latents=VQLatents.QUANTISED``: the codes."""
        first_stage = self.first_stage
        if first_stage.quantizer is not None and self.config.vq_latents is VQLatents.PRE_QUANTISATION:
            return first_stage.quant_conv(first_stage.encoder(images))
        encoded = first_stage.encode(images)
        return encoded.sample() if isinstance(encoded, DiagonalGaussian) else encoded[0]

    @torch.no_grad()
    def set_latent_scale_from(self, images: Tensor) -> float:
        """LDM's ``scale_by_std`` (App. G): scale = 1 / std(E(x)) of this batch, so the diffusion model sees
        latents of unit variance. Stored in the ``latent_scale`` buffer; call it once, on the first batch."""
        if self.first_stage is None:
            raise ValueError(f"{self.preset.name} works in pixel space; it has no latents to scale.")
        self.latent_scale.fill_(1.0 / self.raw_latents(images).float().std().item())
        return float(self.latent_scale)

    def encode(self, images: Tensor) -> Tensor:
        """z0 = scale * E(x); pixels unchanged for a pixel-space model."""
        self.check_images(images)
        if self.first_stage is None:
            return images
        if self.needs_latent_scale:
            raise RuntimeError("the latent scale has not been measured: call set_latent_scale_from(images) on a "
                               "training batch first (the diffusion task does this on its first batch).")
        return self.raw_latents(images) * self.latent_scale

    def decode(self, latents: Tensor) -> Tensor:
        """x = D(z0 / scale); the identity for a pixel-space model."""
        return latents if self.first_stage is None else self.first_stage.decode(latents / self.latent_scale)

    def check_images(self, images: Tensor) -> None:
        if self.config.multi_aspect and images.shape[1] == self.image_shape[0]:
            self.check_size(tuple(images.shape[-2:]))
            return
        if tuple(images.shape[1:]) != self.image_shape:
            c, h, w = self.image_shape
            raise ValueError(
                f"images are {tuple(images.shape[1:])} (channels, height, width), but {self.preset.name} is built "
                f"for ({c}, {h}, {w}). Build the dataset at {h}x{w} with {c} channel(s) "
                f"(ldm_lab.data.build_dataset does), or choose a preset made for your images.")

    # -- conditioning ----------------------------------------------------------------------------------------

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """The batch keys this model is conditioned on (``()``: unconditional)."""
        return self.conditioner.config.keys

    @property
    def is_conditional(self) -> bool:
        return bool(self.conditioner.config.conditions)

    @property
    def num_classes(self) -> int:
        """Real classes of a class-conditional model (label ``num_classes`` is the null class); else 0."""
        classes = [e for e in self.conditioner.embedders.values() if isinstance(e, ClassEmbedder)]
        return classes[0].config.num_classes if classes else 0

    def condition(self, batch: Mapping[str, Any], num: int | None = None, dropout: bool = False) -> dict[str, Tensor]:
        """The U-Net keywords (``context``, ``y``, ``concat``) for a batch's conditions; ``dropout``: replace
        each by "no condition" at its training rate. ``num`` defaults to the batch's size."""
        return self.conditioner(batch, self.count(batch, num), dropout)

    def unconditional(self, batch: Mapping[str, Any], num: int | None = None) -> dict[str, Tensor]:
        """CFG's unconditional keywords: each condition replaced by its null (empty prompt, null class, ...)."""
        return self.conditioner.unconditional(batch, self.count(batch, num))

    def count(self, batch: Mapping[str, Any], num: int | None = None) -> int:
        """``num``, or the number of items in the batch (its images, or its conditions)."""
        if num is not None:
            return num
        sizes = {len(batch[key]) for key in ("image", *self.condition_keys) if key in batch}
        if len(sizes) != 1:
            raise ValueError(f"cannot tell the batch size from {sorted(batch)} (sizes {sorted(sizes)}); pass num=.")
        return sizes.pop()

    def check_request(self, request: Mapping[str, Any]) -> None:
        """Errors that say what this model can be conditioned on, for conditions a user asked for."""
        name, takes = self.preset.name, self.conditioner.config.description or "nothing (it is unconditional)"
        for key in request:
            if key not in self.condition_keys:
                what = REQUEST_NAMES.get(key, repr(key))
                raise ValueError(f"{name} takes no {what}: it is conditioned on {takes}. Drop the {what}, or pick "
                                 "a model trained on them.")

    # -- denoiser -------------------------------------------------------------------------------------------

    def forward(self, x_t: Tensor, timesteps: Tensor, context: Tensor | None = None, y: Tensor | None = None,
                concat: Tensor | None = None) -> Tensor:
        """The U-Net's eps / v / x0 prediction for x_t ``(b, c, h, w)`` at ``timesteps`` ``(b,)``."""
        return self.unet(x_t, timesteps, context=context, y=y, concat=concat)

    # -- weights that come from elsewhere ---------------------------------------------------------------------

    def load_pretrained(self) -> None:
        """Load the frozen pretrained parts that are not trained here (lab-clip's text tower for the text
        models, as SD loads CLIP). A fresh run calls it before training; loading a shipped model calls it too,
        since shipped files leave those weights out (``pretrained_prefixes``)."""
        self.conditioner.load_pretrained()

    @property
    def pretrained_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the weights ``load_pretrained`` restores (not stored in shipped files)."""
        return tuple(f"conditioner.embedders.{name}." for name in self.conditioner.pretrained())

    def train(self, mode: bool = True) -> LatentDiffusion:
        """As ``nn.Module.train``, but the frozen first stage always stays in eval mode."""
        super().train(mode)
        if self.first_stage is not None:
            self.first_stage.eval()
        return self
