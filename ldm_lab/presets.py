"""Named models: the full-size Stable Diffusion family, LDM's first stages, and small "lab" models to train here.

A preset says which networks a model has (U-Net, autoencoder, text encoders) and how it was trained (what the
U-Net predicts, the noise schedule, the latent scale). ``build_preset(name, device="meta")`` builds the
networks without allocating memory, which is how ``ldm-lab params`` counts parameters.

    >>> get_preset("sdxl-base").unet.context_dim
    2048
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ldm_lab.device import resolve_device
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.schedules import Schedule
from ldm_lab.nn.autoencoder import (KL_F4, KL_F8, KL_F16, KL_F32, VQ_F4, VQ_F4_NOATTN, VQ_F8, VQ_F16, Autoencoder,
                                    AutoencoderConfig)
from ldm_lab.nn.text import (CLIP_L14, CLIP_L14_SDXL, OPENCLIP_BIGG14, OPENCLIP_H14, TINY, TextEncoder,
                             TextEncoderConfig)
from ldm_lab.nn.unet import UNet, UNetConfig


@dataclass(frozen=True)
class Preset:
    """A named model: its networks and its diffusion setup. Diffusion fields matter only when ``unet`` is set."""

    name: str
    description: str                                  # one line, citing where the configuration comes from
    unet: UNetConfig | None = None                    # None: a first-stage-only preset
    autoencoder: AutoencoderConfig | None = None      # None: the U-Net works in pixel space
    text_encoders: dict[str, TextEncoderConfig] = field(default_factory=dict)  # by component name, in order
    prediction: Prediction = Prediction.EPS
    schedule: Schedule = Schedule.SCALED_LINEAR
    num_train_timesteps: int = 1000
    latent_scale: float | None = None                 # z = scale * E(x); None: estimate as 1 / std (LDM App. G)
    resolution: tuple[int, int] = (512, 512)          # native image size (height, width) in pixels

    @property
    def autoencoder_name(self) -> str:
        """``vae`` when the autoencoder serves a diffusion model, ``first_stage`` for a bare LDM first stage."""
        return "vae" if self.unet is not None else "first_stage"


# --- the Stable Diffusion family -----------------------------------------------------------------------------

SD1_CONTEXT = "CLIP ViT-L/14 last layer, 768"
SD15_UNET = UNetConfig(context_description=SD1_CONTEXT)
SD2_UNET = UNetConfig(num_heads=None, head_dim=64, context_dim=1024, use_linear_projection=True,
                      context_description="OpenCLIP ViT-H/14 penultimate layer, 1024")
SDXL_BASE_UNET = UNetConfig(
    channel_mult=(1, 2, 4), transformer_depth=(0, 2, 10), transformer_depth_middle=10, num_heads=None,
    head_dim=64, context_dim=2048, use_linear_projection=True, y_dim=2816,
    context_description="CLIP-L penultimate 768 + OpenCLIP bigG penultimate without final norm 1280",
    y_description="pooled bigG text 1280 + 6 micro-conditioning scalars x 256: original size, crop, target size")
SDXL_REFINER_UNET = UNetConfig(
    model_channels=384, transformer_depth=(0, 4, 4, 0), transformer_depth_middle=4, num_heads=None, head_dim=64,
    context_dim=1280, use_linear_projection=True, y_dim=2560,
    context_description="OpenCLIP bigG penultimate without final norm, 1280",
    y_description="pooled bigG text 1280 + 5 scalars x 256: original size, crop, aesthetic score")

_SD = dict(autoencoder=KL_F8, schedule=Schedule.SCALED_LINEAR, num_train_timesteps=1000)
_SDXL = dict(_SD, latent_scale=0.13025, resolution=(1024, 1024))

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("sd15", "Stable Diffusion 1.5 (CompVis stable-diffusion configs/v1-inference.yaml), eps, 512x512",
           SD15_UNET, text_encoders={"clip_l": CLIP_L14}, latent_scale=0.18215, **_SD),
    Preset("sd15-inpaint", "SD 1.5 inpainting (runwayml): 9 input channels = latent 4 + mask 1 + masked image 4",
           SD15_UNET.replace(in_channels=9), text_encoders={"clip_l": CLIP_L14}, latent_scale=0.18215, **_SD),
    Preset("sd21", "Stable Diffusion 2.1-base (SGM configs/inference/sd_2_1.yaml), eps, 512x512",
           SD2_UNET, text_encoders={"openclip_h": OPENCLIP_H14}, latent_scale=0.18215, **_SD),
    Preset("sd21-v", "Stable Diffusion 2.1 (SGM configs/inference/sd_2_1_768.yaml), v-prediction, 768x768",
           SD2_UNET, text_encoders={"openclip_h": OPENCLIP_H14}, latent_scale=0.18215, prediction=Prediction.V,
           resolution=(768, 768), **_SD),
    Preset("sdxl-base", "SDXL 1.0 base (Podell et al. 2023 Tab. 1; SGM configs/inference/sd_xl_base.yaml)",
           SDXL_BASE_UNET, text_encoders={"clip_l": CLIP_L14_SDXL, "openclip_bigg": OPENCLIP_BIGG14}, **_SDXL),
    Preset("sdxl-refiner", "SDXL 1.0 refiner (SGM configs/inference/sd_xl_refiner.yaml): bigG only, aesthetic score",
           SDXL_REFINER_UNET, text_encoders={"openclip_bigg": OPENCLIP_BIGG14}, **_SDXL),
    Preset("sdxl-turbo", "SDXL-Turbo (Sauer et al. 2023, ADD): SDXL base distilled to 1-4 steps, 512x512",
           SDXL_BASE_UNET, text_encoders={"clip_l": CLIP_L14_SDXL, "openclip_bigg": OPENCLIP_BIGG14},
           **dict(_SDXL, resolution=(512, 512))),
]}

# --- LDM's first stages (Rombach et al. 2022, Tab. 8; models/first_stage_models/*/config.yaml) ---------------

_LDM_FIRST_STAGES = {"kl-f4": KL_F4, "kl-f8": KL_F8, "kl-f16": KL_F16, "kl-f32": KL_F32, "vq-f4": VQ_F4,
                     "vq-f4-noattn": VQ_F4_NOATTN, "vq-f8": VQ_F8, "vq-f16": VQ_F16}
PRESETS.update({name: Preset(name, f"LDM first stage {name} (LDM Tab. 8, models/first_stage_models/{name})",
                             autoencoder=config, resolution=(256, 256))
                for name, config in _LDM_FIRST_STAGES.items()})

# --- small models trained in the notebooks (a 2-core CPU trains them in minutes) ----------------------------

LAB_PIXEL_UNET = UNetConfig(in_channels=1, out_channels=1, model_channels=32, channel_mult=(1, 2, 2),
                            num_res_blocks=1, transformer_depth=(0, 1, 0), num_heads=None, head_dim=32,
                            context_dim=None)
LAB_AUTOENCODER = AutoencoderConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, resolution=64)  # KL, f = 4
LAB_TEXT = TINY
LAB_LATENT_UNET = UNetConfig(model_channels=32, channel_mult=(1, 2, 4), num_res_blocks=1,
                             transformer_depth=(0, 1, 1), num_heads=None, head_dim=32,
                             context_dim=LAB_TEXT.width, use_linear_projection=True,
                             context_description=f"the lab text encoder's last layer, {LAB_TEXT.width}")
LAB_POOLED_TEXT = replace(LAB_TEXT, return_pooled=True)  # SDXL-style: also the pooled text embedding
MICRO_CONDITIONING_DIM = 256  # Fourier features per SDXL micro-conditioning scalar

PRESETS.update({p.name: p for p in [
    Preset("lab-pixel", "unconditional pixel-space DDPM for 28x28 Fashion-MNIST (Ho et al. 2020 setup, tiny)",
           LAB_PIXEL_UNET, schedule=Schedule.LINEAR, resolution=(28, 28)),
    Preset("lab-class", "class-conditional Fashion-MNIST pixel model; label 10 is 'no class' for CFG",
           LAB_PIXEL_UNET.replace(num_classes=11), schedule=Schedule.LINEAR, resolution=(28, 28)),
    Preset("lab-emoji", "tiny text-to-image latent model on 64x64 emoji: KL-f4 autoencoder, lab text encoder",
           LAB_LATENT_UNET, LAB_AUTOENCODER, {"text": LAB_TEXT}, resolution=(64, 64)),
    Preset("lab-sdxl", "tiny SDXL replica: pooled text + 6 size/crop scalars as vector condition (SDXL §2.2)",
           LAB_LATENT_UNET.replace(y_dim=LAB_TEXT.projection_dim + 6 * MICRO_CONDITIONING_DIM,
                                   y_description=f"pooled text {LAB_TEXT.projection_dim} + 6 micro-conditioning "
                                                 f"scalars x {MICRO_CONDITIONING_DIM}"),
           LAB_AUTOENCODER, {"text": LAB_POOLED_TEXT}, resolution=(64, 64)),
]})


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name raises an error listing the valid ones."""
    if name in PRESETS:
        return PRESETS[name]
    close = [p for p in PRESETS if p.startswith(name)] or difflib.get_close_matches(name, PRESETS, n=1)
    suggestion = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"unknown preset {name!r}.{suggestion} Valid presets: {', '.join(PRESETS)}")


def build_preset(name: str | Preset, device: str | torch.device | None = None) -> nn.ModuleDict:
    """The preset's networks by component name (``unet``, ``vae`` or ``first_stage``, each text encoder),
    built on ``device`` (default: the best available; ``"meta"`` allocates nothing, for counting)."""
    preset = get_preset(name) if isinstance(name, str) else name
    modules = nn.ModuleDict()
    with torch.device(resolve_device(device)):
        if preset.unet is not None:
            modules["unet"] = UNet(preset.unet)
        if preset.autoencoder is not None:
            modules[preset.autoencoder_name] = Autoencoder(preset.autoencoder)
        for encoder_name, config in preset.text_encoders.items():
            modules[encoder_name] = TextEncoder(config)
    return modules


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (shared ones once)."""
    return sum(p.numel() for p in module.parameters())


def parameter_counts(name: str | Preset) -> dict[str, int]:
    """Parameters per component and ``total``, counted on the meta device (no memory, about a second)."""
    modules = build_preset(name, device="meta")
    counts = {component: count_parameters(module) for component, module in modules.items()}
    return {**counts, "total": sum(counts.values())}


__all__ = ["Prediction", "Schedule", "Preset", "PRESETS", "get_preset", "build_preset", "count_parameters",
           "parameter_counts"]
