"""The papers' full-size models: Stable Diffusion 1.5 / 2.1, SDXL base, refiner and Turbo, and LDM's first stages,
with the conditioners of the SDXL models (SDXL §2.2, §2.5). Nothing here is trained in the lab: ``ldm-lab params``
counts them, ``ldm_lab.interop`` loads their real checkpoints from local files.
"""

from __future__ import annotations

from ldm_lab.conditioning.base import Null
from ldm_lab.conditioning.conditioner import ConditionerConfig
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.schedules import Schedule
from ldm_lab.nn.autoencoder import KL_F4, KL_F8, KL_F16, KL_F32, VQ_F4, VQ_F4_NOATTN, VQ_F8, VQ_F16
from ldm_lab.nn.text import CLIP_L14, CLIP_L14_SDXL, OPENCLIP_BIGG14, OPENCLIP_H14
from ldm_lab.nn.unet import UNetConfig
from ldm_lab.presets.base import Preset
from ldm_lab.presets.conditioners import ConditionerOf, size_conditions, text_conditions

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

STABLE_DIFFUSION: tuple[Preset, ...] = (
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
)

# --- LDM's first stages (Rombach et al. 2022, Tab. 8; models/first_stage_models/*/config.yaml) ---------------

_LDM_FIRST_STAGES = {"kl-f4": KL_F4, "kl-f8": KL_F8, "kl-f16": KL_F16, "kl-f32": KL_F32, "vq-f4": VQ_F4,
                     "vq-f4-noattn": VQ_F4_NOATTN, "vq-f8": VQ_F8, "vq-f16": VQ_F16}
LDM_FIRST_STAGES: tuple[Preset, ...] = tuple(
    Preset(name, f"LDM first stage {name} (LDM Tab. 8, models/first_stage_models/{name})", autoencoder=config,
           resolution=(256, 256))
    for name, config in _LDM_FIRST_STAGES.items())

PRESETS: tuple[Preset, ...] = STABLE_DIFFUSION + LDM_FIRST_STAGES

# --- the SDXL models' conditioners (SD 1.x / 2.x: a prompt, read from their networks) --------------------------


def sdxl_conditioner(preset: Preset, dropout: float, trainable: bool, text_null: Null = Null.ZEROS
                     ) -> ConditionerConfig:
    """SDXL base (and Turbo): both towers' prompts, the pooled prompt and size/crop. Its sampling zeroes the text
    embeddings in the unconditional branch (SGM's force_uc_zero_embeddings=["txt"]), so training drops them to
    zeros too, CLIP-L's context, bigG's context and bigG's pooled vector each drawn separately (SGM's ucg)."""
    conditions = text_conditions(preset, dropout, trainable, text_null) + size_conditions(preset)
    return ConditionerConfig(conditions, "prompt, pooled prompt and SDXL size/crop micro-conditioning")


def sdxl_refiner_conditioner(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """SDXL refiner: bigG's prompt and pooled prompt, size/crop and the aesthetic score (SDXL §2.5). SGM samples it
    as a "legacy" model: no force_uc_zero_embeddings, so its unconditional branch encodes the negative (by default
    empty) prompt, with aesthetic score 2.5."""
    return ConditionerConfig(text_conditions(preset, dropout, trainable) + size_conditions(preset, refiner=True),
                             "prompt, pooled prompt, size/crop, aesthetic score")


CONDITIONERS: dict[str, ConditionerOf] = {
    "sdxl-base": sdxl_conditioner, "sdxl-turbo": sdxl_conditioner, "sdxl-refiner": sdxl_refiner_conditioner,
}
