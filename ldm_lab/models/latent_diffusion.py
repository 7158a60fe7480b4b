"""The latent diffusion model (Rombach et al. 2022, §3.3): a frozen first stage E/D, a conditioner, a U-Net
eps_theta(z_t, t, tau(y)) and its noise schedule, in one module.

    model = LatentDiffusion(LatentDiffusionConfig("lab-emoji"))
    z0 = model.encode(images)                       # scale * E(x), about unit variance
    cond = model.condition(prompts=["red apple"])   # {"context": (b, 77, 128)}
    images = model.decode(z0)                       # D(z0 / scale)

A preset without an autoencoder (``lab-pixel``, ``lab-class``) works in pixel space: encode and decode are the
identity. The latent scale is a buffer, so it is saved in every checkpoint and a resumed run or a sampler uses
the value the run started with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor, nn

from ldm_lab.diffusion import NoiseSchedule, make_schedule
from ldm_lab.nn.autoencoder import Autoencoder
from ldm_lab.nn.distributions import DiagonalGaussian
from ldm_lab.nn.text import TextEncoder
from ldm_lab.nn.unet import UNet
from ldm_lab.presets import Preset, get_preset


class Conditioning(str, Enum):
    """What a model is conditioned on (LDM §3.3: the domain-specific encoder tau_theta)."""

    NONE = "none"    # unconditional
    CLASS = "class"  # a class label, embedded and added to the time embedding; the last label means "no class"
    TEXT = "text"    # prompt tokens, cross-attended by the U-Net; the empty prompt means "no text"


@dataclass(frozen=True)
class LatentDiffusionConfig:
    """A trainable latent (or pixel) diffusion model built from a preset."""

    preset: str                      # a preset with a U-Net: its networks, prediction, schedule and latent scale
    condition_dropout: float = 0.1   # share of training conditions replaced by "no condition", so that one
                                     # network also learns the unconditional model CFG needs (Ho & Salimans 2022)
    train_text_encoder: bool = True  # LDM §4.3 trains its text transformer jointly; SD freezes CLIP (False)
    snr_gamma: float | None = None   # min-SNR-gamma loss weighting (Hang et al. 2023); None: DDPM's plain loss

    def __post_init__(self) -> None:
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"condition_dropout is a probability in [0, 1), got {self.condition_dropout}; "
                             "0.1 is LDM/SD's usual value, 0 trains no unconditional model (no guidance).")


def conditioning_of(preset: Preset) -> Conditioning:
    """Class labels when the U-Net embeds classes, text when it cross-attends to a text encoder, else none."""
    if preset.unet.num_classes is not None:
        return Conditioning.CLASS
    if preset.unet.context_dim is not None:
        return Conditioning.TEXT
    return Conditioning.NONE


def _check_trainable(preset: Preset) -> None:
    if preset.unet is None:
        raise ValueError(f"preset {preset.name!r} has no U-Net: it is a first stage alone. Train autoencoders "
                         "with the lab-autoencoder target, and diffusion with a preset such as lab-class.")
    if preset.unet.y_dim is not None or len(preset.text_encoders) > 1:
        raise ValueError(f"preset {preset.name!r} needs SDXL's vector conditioning (pooled text + size/crop), "
                         "which LatentDiffusion does not assemble; use lab-pixel, lab-class or lab-emoji.")


class LatentDiffusion(nn.Module):
    """First stage (frozen) + text encoder (optional) + U-Net. ``forward`` is the U-Net, so the module itself
    is the ``model_fn(x_t, t, **cond)`` that ``ldm_lab.diffusion.sample`` and ``DiffusionLoss`` call."""

    def __init__(self, config: LatentDiffusionConfig) -> None:
        super().__init__()
        preset = get_preset(config.preset)
        _check_trainable(preset)
        self.config, self.preset = config, preset
        self.conditioning = conditioning_of(preset)
        self.unet = UNet(preset.unet)
        self.first_stage = Autoencoder(preset.autoencoder).requires_grad_(False) if preset.autoencoder else None
        self.text_encoder = None
        if self.conditioning is Conditioning.TEXT:
            (text_config,) = preset.text_encoders.values()
            self.text_encoder = TextEncoder(text_config).requires_grad_(config.train_text_encoder)
        # NaN: not measured yet; set from the first training batch by ``set_latent_scale_from`` (LDM App. G).
        scale = 1.0 if self.first_stage is None else (preset.latent_scale or math.nan)
        self.register_buffer("latent_scale", torch.tensor(scale))
        self.schedule: NoiseSchedule = make_schedule(preset.schedule.value, preset.num_train_timesteps)

    # -- first stage ----------------------------------------------------------------------------------------

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of what the U-Net denoises, at the preset's resolution."""
        height, width = self.preset.resolution
        if self.first_stage is None:
            return self.preset.unet.in_channels, height, width
        f = self.first_stage.config.downsampling_factor
        return self.first_stage.config.embed_dim, height // f, width // f

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images the model is trained on."""
        channels = self.preset.unet.in_channels if self.first_stage is None else self.first_stage.config.in_channels
        return (channels, *self.preset.resolution)

    @property
    def needs_latent_scale(self) -> bool:
        return bool(torch.isnan(self.latent_scale))

    @torch.no_grad()
    def raw_latents(self, images: Tensor) -> Tensor:
        """E(x): a posterior sample (KL, as LDM's ``get_first_stage_encoding``) or the quantised latent (VQ)."""
        encoded = self.first_stage.encode(images)
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
        if tuple(images.shape[1:]) != self.image_shape:
            c, h, w = self.image_shape
            raise ValueError(
                f"images are {tuple(images.shape[1:])} (channels, height, width), but {self.preset.name} is built "
                f"for ({c}, {h}, {w}). Build the dataset at {h}x{w} with {c} channel(s) "
                f"(ldm_lab.data.build_dataset does), or choose a preset made for your images.")

    # -- conditioning ---------------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Real classes; label ``num_classes`` is the null class used for guidance."""
        return self.preset.unet.num_classes - 1 if self.conditioning is Conditioning.CLASS else 0

    def condition(self, labels: Tensor | None = None, prompts: list[str] | None = None) -> dict[str, Tensor]:
        """The U-Net keywords for labels ``(b,)`` (class models) or prompts (text models); ``{}`` for none."""
        self.check_request(labels, prompts)
        if self.conditioning is Conditioning.CLASS:
            return {"y": labels.to(self.latent_scale.device)}
        if self.conditioning is Conditioning.TEXT:
            return {"context": self.text_encoder.encode(list(prompts)).context}
        return {}

    def null_condition(self, batch: int) -> dict[str, Tensor]:
        """"No condition": the null class or the empty prompt, for CFG's unconditional branch."""
        if self.conditioning is Conditioning.CLASS:
            return self.condition(labels=torch.full((batch,), self.num_classes, dtype=torch.long), prompts=None)
        if self.conditioning is Conditioning.TEXT:
            return self.condition(prompts=[""] * batch)
        return {}

    def check_request(self, labels: Tensor | None, prompts: list[str] | None) -> None:
        """Errors that say what this model can be conditioned on."""
        self._check_prompts(prompts)
        self._check_labels(labels)

    def _check_prompts(self, prompts: list[str] | None) -> None:
        name, kind = self.preset.name, self.conditioning
        if kind is Conditioning.TEXT and prompts is None:
            raise ValueError(f"{name} is a text-to-image model: pass prompts (the empty prompt is unconditional).")
        if kind is not Conditioning.TEXT and prompts is not None:
            fix = (f"pass class labels 0..{self.num_classes - 1} instead" if kind is Conditioning.CLASS
                   else "drop the prompt")
            raise ValueError(f"{name} is not a text-to-image model ({kind.value} conditioning): {fix}.")

    def _check_labels(self, labels: Tensor | None) -> None:
        name, kind, n = self.preset.name, self.conditioning, self.num_classes
        if kind is not Conditioning.CLASS:
            if labels is not None:
                fix = "pass prompts instead" if kind is Conditioning.TEXT else "drop the class"
                raise ValueError(f"{name} is not class-conditional ({kind.value} conditioning): {fix}.")
            return
        if labels is None:
            raise ValueError(f"{name} is class-conditional: pass labels 0..{n - 1} ({n} is 'no class').")
        outside = labels[(labels < 0) | (labels > n)]
        if outside.numel():
            raise ValueError(f"class {int(outside[0])} is out of range: {name} has classes 0..{n - 1}, and {n} "
                             "means 'no class'. Choose a class in that range.")

    # -- denoiser -------------------------------------------------------------------------------------------

    def forward(self, x_t: Tensor, timesteps: Tensor, context: Tensor | None = None,
                y: Tensor | None = None) -> Tensor:
        """The U-Net's eps / v / x0 prediction for x_t ``(b, c, h, w)`` at ``timesteps`` ``(b,)``."""
        return self.unet(x_t, timesteps, context=context, y=y)

    def train(self, mode: bool = True) -> LatentDiffusion:
        """As ``nn.Module.train``, but the frozen first stage always stays in eval mode."""
        super().train(mode)
        if self.first_stage is not None:
            self.first_stage.eval()
        return self
