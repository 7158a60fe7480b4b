"""Named models: the full-size Stable Diffusion family, LDM's first stages, and small "lab" models to train here.

A preset says which networks a model has (U-Net, autoencoder, text encoders) and how it was trained (what the
U-Net predicts, the noise schedule, the latent scale). ``build_preset(name, device="meta")`` builds the
networks without allocating memory, which is how ``ldm-lab params`` counts parameters.

    >>> get_preset("sdxl-base").unet.context_dim
    2048
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ldm_lab.data import DATASETS
from ldm_lab.device import resolve_device
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.schedules import Schedule, check_zero_terminal_snr
from ldm_lab.names import unknown_name_error
from ldm_lab.nn.autoencoder import (KL_F4, KL_F8, KL_F16, KL_F32, VQ_F4, VQ_F4_NOATTN, VQ_F8, VQ_F16, Autoencoder,
                                    AutoencoderConfig, Regularizer)
from ldm_lab.nn.text import (CLIP_L14, CLIP_L14_SDXL, OPENCLIP_BIGG14, OPENCLIP_H14, TINY, Activation, TextEncoder,
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
    text_weights: str | None = None                   # a shipped CLIP whose text tower the encoders load, frozen
                                                      # (SD's design); None: the towers train with the U-Net
    prediction: Prediction = Prediction.EPS
    schedule: Schedule = Schedule.SCALED_LINEAR
    num_train_timesteps: int = 1000
    zero_terminal_snr: bool = False                   # rescale the schedule so that SNR_T = 0, pure noise at the
                                                      # last step (Lin et al. 2023, Alg. 1); needs v-prediction
    latent_scale: float | None = None                 # z = scale * E(x); None: estimate as 1 / std (LDM App. G)
    resolution: tuple[int, int] = (512, 512)          # native image size (height, width) in pixels

    def __post_init__(self) -> None:
        if self.zero_terminal_snr:
            check_zero_terminal_snr(Prediction(self.prediction).value, f"preset {self.name!r}")

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
# The compression ablation's first-stage design: KL, f = 4, 32 channels at every level (0.29 M parameters), so the
# twelve first stages of the ablation ship in about 8 MiB together. Its KL-f4 is ``lab-kl-f4``.
LAB_ABLATION_AUTOENCODER = AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=1, resolution=64)
# lab-emoji's first stage: KL, f = 4, 4 latent channels (64x64x3 -> 16x16x4), 32/32/64 channels: wider at the
# 16x16 level, where it costs a quarter of a full-resolution level and holds what the latent must describe.
LAB_AUTOENCODER = AutoencoderConfig(ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, resolution=64)
# The Shapes models' first stage: the same design, trained on Shapes scenes (each latent model decodes with a first
# stage trained on its own data; lab-emoji's renders Shapes scenes at about 10 dB).
LAB_SHAPES_AUTOENCODER = LAB_AUTOENCODER
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
           LAB_PIXEL_UNET.replace(num_classes=DATASETS["fashion_mnist"].num_classes + 1), schedule=Schedule.LINEAR, resolution=(28, 28)),
]})

# --- the conditioning lab models (notebook 04; their conditioners: ldm_lab.conditioning.presets) -------------

LAB_FMNIST_AUTOENCODER = replace(LAB_ABLATION_AUTOENCODER, in_channels=1, out_channels=1, resolution=32)  # KL, f = 4
# The text-to-image lab models read the shipped lab-clip's text tower, frozen, as Stable Diffusion reads a frozen
# CLIP (ldm_lab.evaluation_models.lab_clip.LabClipConfig: 64 wide, 3 blocks, 4 heads, 128-wide projection). Its
# weights stay in lab_clip.safetensors, so no text model ships a copy of the 49,408-token embedding.
LAB_CLIP_TEXT = TextEncoderConfig(width=64, num_layers=3, num_heads=4, activation=Activation.GELU,
                                  projection_dim=128, pad_token_id=0)
LAB_CLIP_TEXT_SDXL = replace(LAB_CLIP_TEXT, hidden_layer=-2, final_norm=False, return_pooled=True)  # as SDXL's bigG
# The conditioned lab U-Nets: about 1.2 M parameters (a 2.4 MiB fp16 file), cross-attention at 1/2 and 1/4 of the
# latent's side.
LAB_CONDITIONED_UNET = LAB_LATENT_UNET.replace(channel_mult=(1, 1, 2))
LAB_PROMPT_UNET = LAB_CONDITIONED_UNET.replace(context_dim=LAB_CLIP_TEXT.width, context_description=(
    f"lab-clip's text tower, last layer after the final norm, {LAB_CLIP_TEXT.width}"))
# lab-emoji's U-Net, sized for a 2-core CPU (16.3 M parameters, about 23 training images/s on one thread at batch
# 16): SD's design in miniature -- 64/128/256 channels on 16/8/4 latent pixels, one ResBlock per level,
# cross-attention to the prompt at 8x8, 4x4 and in the middle. Bigger U-Nets learn more per image seen; on this
# CPU the step time grows more slowly than the width, so at a fixed budget this width beats the 1.2 M U-Nets.
LAB_EMOJI_UNET = LAB_PROMPT_UNET.replace(model_channels=64, channel_mult=(1, 2, 4))
# The Shapes models' U-Nets (4.7 M parameters with text, about 90 training images/s on one thread at batch 32):
# twice the conditioned width, at the same depth. Shapes scenes are simpler than emoji, but layout and
# segmentation adherence need the capacity to place objects; the 1.2 M U-Nets left both at chance.
LAB_SHAPES_UNET = LAB_CONDITIONED_UNET.replace(model_channels=64)
# The lab models trained with the CPU recipe predict v (Salimans & Ho 2022, SD 2): an eps-model's estimate of the
# clean latent at high noise, x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab), multiplies its error by sqrt((1 - ab) / ab)
# (about 7 at t = 800 of scaled_linear), and the small lab U-Nets' x0 estimates there were textured noise; v's is
# x0 = sqrt(ab) x_t - sqrt(1 - ab) v, whose error is never amplified.
SHAPES_MAP_CLASSES = 1 + DATASETS["shapes"].num_classes  # a Shapes segmentation map: background, then each kind

PRESETS.update({p.name: p for p in [
    Preset("lab-emoji", "small text-to-image latent model on 64x64 emoji: KL-f4 autoencoder, frozen lab-clip "
           "text (SD 2's design: a frozen CLIP text tower, cross-attention, v-prediction, scaled_linear)",
           LAB_EMOJI_UNET, LAB_AUTOENCODER, {"text": LAB_CLIP_TEXT}, text_weights="lab-clip", resolution=(64, 64),
           prediction=Prediction.V),
    Preset("lab-sdxl", "tiny SDXL replica: pooled text + 6 size/crop scalars as vector condition (SDXL §2.2)",
           LAB_SHAPES_UNET.replace(context_dim=LAB_CLIP_TEXT.width,
               y_dim=LAB_CLIP_TEXT.projection_dim + 6 * MICRO_CONDITIONING_DIM,
               context_description=f"lab-clip's text tower, penultimate block, no final norm, {LAB_CLIP_TEXT.width}",
               y_description=f"pooled lab-clip text {LAB_CLIP_TEXT.projection_dim} + 6 micro-conditioning scalars x "
                             f"{MICRO_CONDITIONING_DIM}"),
           LAB_SHAPES_AUTOENCODER, {"text": LAB_CLIP_TEXT_SDXL}, text_weights="lab-clip", resolution=(64, 64),
           prediction=Prediction.V),
    Preset("lab-fmnist", "class-conditional latent model on 32x32 Fashion-MNIST (KL-f4, 1 channel): the class "
           "as one learned cross-attention token, as LDM's cin models", LAB_CONDITIONED_UNET.replace(
               context_description="one learned class token (LDM cin), 128"),
           LAB_FMNIST_AUTOENCODER, resolution=(32, 32), prediction=Prediction.V),
    Preset("lab-layout", "layout-to-image on 64x64 Shapes: boxes as (l, b, c) token triples through a transformer "
           "encoder, cross-attended (LDM Tab. 17), and as per-kind box-coverage maps concatenated to the latent "
           f"(in_channels = {LAB_SHAPES_AUTOENCODER.embed_dim} + {DATASETS['shapes'].num_classes})",
           LAB_SHAPES_UNET.replace(in_channels=LAB_SHAPES_AUTOENCODER.embed_dim + DATASETS["shapes"].num_classes,
                                   context_description="layout tokens: 3 per box, 92 at most, 128"),
           LAB_SHAPES_AUTOENCODER, resolution=(64, 64), prediction=Prediction.V),
    Preset("lab-seg", "segmentation-to-image on 64x64 Shapes: the one-hot class map, averaged to the latent's "
           f"size, concatenated to the latent (in_channels = {LAB_SHAPES_AUTOENCODER.embed_dim} + {SHAPES_MAP_CLASSES})",
           LAB_SHAPES_UNET.replace(in_channels=LAB_SHAPES_AUTOENCODER.embed_dim + SHAPES_MAP_CLASSES,
                                   context_dim=None, context_description=""),
           LAB_SHAPES_AUTOENCODER, resolution=(64, 64), prediction=Prediction.V),
]})

# --- the compression ablation (LDM §4.1, Tab. 8, Fig. 6; helpers in ldm_lab.compression) ---------------------
#
# First stages at every downsampling factor f, KL and VQ, for 64x64 emoji: LAB_ABLATION_AUTOENCODER (32 channels
# at every level, one ResBlock per level) with one level per halving, so that f is what changes.
# Latent channels follow LDM: Tab. 8's first stages and the z-shapes of the ablation's LDM-f (App. E, Tab. 13).

COMPRESSION_FACTORS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
LAB_FIRST_STAGE_CH_MULT = {f: (1,) * f.bit_length() for f in COMPRESSION_FACTORS}  # log2(f) + 1 levels of 32
LAB_KL_CHANNELS = {1: 3, 2: 2, 4: 4, 8: 4, 16: 16, 32: 64}  # LDM kl-f8/f16/f32; f4: lab-emoji's 4 (LDM kl-f4: 3);
                                                             # f1, f2 (no LDM KL model): as the VQ ones
LAB_VQ_CHANNELS = {1: 3, 2: 2, 4: 3, 8: 4, 16: 8, 32: 32}   # LDM vq-f4/f8/f16 and the ablation's f2 and f32
LAB_VQ_CODEBOOK = {1: 128, 2: 128, 4: 512, 8: 1024, 16: 1024, 32: 1024}  # LDM's K (2048, 8192, 16384) / 16, for
                                                                          # ~3.4k training images, not millions;
                                                                          # f1 (pixels: a palette) as f2


def check_factor(f: int) -> int:
    """``f`` if the ablation has it, else an error listing the factors it has."""
    if f not in COMPRESSION_FACTORS:
        raise ValueError(f"downsampling factor f={f} is not in the compression ablation; choose one of "
                         f"{COMPRESSION_FACTORS} (64x64 images: latents of {[64 // f for f in COMPRESSION_FACTORS]}"
                         " pixels a side).")
    return f


def lab_first_stage(regularizer: Regularizer, f: int) -> AutoencoderConfig:
    """The lab first stage at factor ``f`` (LDM §3.1) of the compression ablation."""
    vq = regularizer is Regularizer.VQ
    channels = (LAB_VQ_CHANNELS if vq else LAB_KL_CHANNELS)[check_factor(f)]
    return replace(LAB_ABLATION_AUTOENCODER, ch_mult=LAB_FIRST_STAGE_CH_MULT[f], z_channels=channels, embed_dim=channels,
                   regularizer=regularizer, codebook_size=LAB_VQ_CODEBOOK[f] if vq else None,
                   restart_idle_codes=vq)  # LDM's codebook init leaves ours mostly dead over a run of minutes


# LDM-f, the ablation's diffusion models: class-conditional on emoji's categories, as the paper's ImageNet models,
# on the VQ first stages, as the paper's (Tab. 13 gives each LDM-f a codebook size); LDM-1 works on pixels.
# Levels as LDM's, down to 1/32 of the image side (6 at f1, 5 at f2, 4 at f4, 3 at f8 and f16; f32's 2x2 latent
# allows 2), one ResBlock per level, self-attention at latent sides <= 8 (LDM: 32, 16, 8 at 256 px) and in the
# middle. 32 channels per level, the deepest level 64: every U-Net has 1.25M parameters +-20% (LDM: 391M-396M).
LAB_LDM_CHANNEL_MULT = {1: (1, 1, 1, 1, 1, 2), 2: (1, 1, 1, 1, 2), 4: (1, 1, 1, 2), 8: (1, 1, 2), 16: (1, 1, 2),
                        32: (1, 2)}
LAB_LDM_MODEL_CHANNELS = {f: 32 for f in COMPRESSION_FACTORS}
LAB_LDM_ATTENTION_MAX_SIDE = 8  # self-attention at levels whose latent side is at most this


def lab_ldm_unet(f: int) -> UNetConfig:
    """The U-Net of LDM-``f`` on 64x64 emoji: latent side 64 / f, channels of the VQ first stage (RGB at f = 1)."""
    channels, side = (3 if check_factor(f) == 1 else LAB_VQ_CHANNELS[f]), 64 // f
    mult = LAB_LDM_CHANNEL_MULT[f]
    attention = tuple(int(side // 2**level <= LAB_LDM_ATTENTION_MAX_SIDE) for level in range(len(mult)))
    return UNetConfig(in_channels=channels, out_channels=channels, model_channels=LAB_LDM_MODEL_CHANNELS[f],
                      channel_mult=mult, num_res_blocks=1, transformer_depth=attention, num_heads=None, head_dim=32,
                      context_dim=None, num_classes=DATASETS["emoji"].num_classes + 1)  # + the null class


PRESETS.update({p.name: p for p in [
    *(Preset(f"lab-{regularizer.value}-f{f}", f"{regularizer.name}-regularised lab first stage, f = {f}, for 64x64 "
             f"emoji (LDM Tab. 8 in miniature)", autoencoder=lab_first_stage(regularizer, f), resolution=(64, 64))
      for regularizer in Regularizer for f in COMPRESSION_FACTORS),
    *(Preset(f"lab-ldm-{f}", f"LDM-{f} of the compression ablation (LDM §4.1, Fig. 6): class-conditional emoji, "
             + ("pixel space" if f == 1 else f"on lab-vq-f{f}"), lab_ldm_unet(f),
             None if f == 1 else lab_first_stage(Regularizer.VQ, f), resolution=(64, 64))
      for f in COMPRESSION_FACTORS),
]})


def get_preset(name: str | Preset) -> Preset:
    """The preset called ``name``; an unknown name raises an error listing the valid ones. A ``Preset`` itself is
    returned as it is (a named preset changed with ``dataclasses.replace``, as the recipe ablation's variants)."""
    if isinstance(name, Preset):
        return name
    if name in PRESETS:
        return PRESETS[name]
    raise unknown_name_error("preset", name, PRESETS)


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
