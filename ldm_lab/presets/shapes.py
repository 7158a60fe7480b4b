"""The Shapes conditioning family (notebooks 04 and 06), on 64x64 procedural scenes whose ground truth is known:
layout-to-image (``lab-layout``, LDM Tab. 17), segmentation-to-image (``lab-seg``, LDM §4.3.2), and a tiny SDXL
(``lab-sdxl``, SDXL §2.2) with its refiner (``LAB_SDXL_REFINER``, §2.5), each with its conditioner. They decode
with a first stage trained on Shapes. Their training targets, SDXL's ablations among them:
``ldm_lab.tasks.targets.shapes``.

The lab refiner differs from lab-sdxl as SDXL's refiner differs from its base: one text tower, and an aesthetic
score in place of the target size in the vector condition. Its score is a *detail score*
(``ldm_lab.pixels.detail_score``), our measurable stand-in for the LAION aesthetic score, sampled at 6.0 and guided
away from 2.5 as SDXL's refiner is.

    model = LatentDiffusion(LatentDiffusionConfig(LAB_SDXL_REFINER, timestep_range=REFINER_TIMESTEPS))
"""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.conditioning.base import Null
from ldm_lab.conditioning.conditioner import ConditionerConfig, ConditionSpec
from ldm_lab.conditioning.layout import LayoutEmbedderConfig
from ldm_lab.conditioning.segmentation import SegmentationEmbedderConfig
from ldm_lab.data import DATASETS
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.presets.base import Preset
from ldm_lab.presets.conditioners import ConditionerOf, size_conditions, text_conditions
from ldm_lab.presets.lab import LAB_AUTOENCODER, LAB_CLIP_TEXT, LAB_CONDITIONED_UNET
from ldm_lab.presets.reference import sdxl_conditioner

# The Shapes models' first stage: lab-emoji's design, trained on Shapes scenes (each latent model decodes with a
# first stage trained on its own data; lab-emoji's renders Shapes scenes at about 10 dB).
LAB_SHAPES_AUTOENCODER = LAB_AUTOENCODER
LAB_CLIP_TEXT_SDXL = replace(LAB_CLIP_TEXT, hidden_layer=-2, final_norm=False, return_pooled=True)  # as SDXL's bigG
# The Shapes models' U-Nets (4.7 M parameters with text, about 90 training images/s on one thread at batch 32):
# twice the conditioned width, at the same depth. Shapes scenes are simpler than emoji, but layout and
# segmentation adherence need the capacity to place objects; the 1.2 M U-Nets left both at chance.
LAB_SHAPES_UNET = LAB_CONDITIONED_UNET.replace(model_channels=64)
MICRO_CONDITIONING_DIM = 256  # Fourier features per SDXL micro-conditioning scalar
SHAPES_MAP_CLASSES = 1 + DATASETS["shapes"].num_classes  # a Shapes segmentation map: background, then each kind

PRESETS: tuple[Preset, ...] = (
    Preset("lab-sdxl", "tiny SDXL replica: pooled text + 6 size/crop scalars as vector condition (SDXL §2.2)",
           LAB_SHAPES_UNET.replace(context_dim=LAB_CLIP_TEXT.width,
               y_dim=LAB_CLIP_TEXT.projection_dim + 6 * MICRO_CONDITIONING_DIM,
               context_description=f"lab-clip's text tower, penultimate block, no final norm, {LAB_CLIP_TEXT.width}",
               y_description=f"pooled lab-clip text {LAB_CLIP_TEXT.projection_dim} + 6 micro-conditioning scalars x "
                             f"{MICRO_CONDITIONING_DIM}"),
           LAB_SHAPES_AUTOENCODER, {"text": LAB_CLIP_TEXT_SDXL}, text_weights="lab-clip", resolution=(64, 64),
           prediction=Prediction.V),
    Preset("lab-layout", "layout-to-image on 64x64 Shapes: boxes as (l, b, c) token triples through a transformer "
           "encoder, cross-attended (LDM Tab. 17), and as per-kind box-coverage maps concatenated to the latent "
           f"(in_channels = {LAB_SHAPES_AUTOENCODER.embed_dim} + {DATASETS['shapes'].num_classes})",
           LAB_SHAPES_UNET.replace(in_channels=LAB_SHAPES_AUTOENCODER.embed_dim + DATASETS["shapes"].num_classes,
                                   context_description="layout tokens: 3 per box, 92 at most, 128"),
           LAB_SHAPES_AUTOENCODER, resolution=(64, 64), prediction=Prediction.V),
    Preset("lab-seg", "segmentation-to-image on 64x64 Shapes: the one-hot class map, averaged to the latent's "
           "size, concatenated to the latent "
           f"(in_channels = {LAB_SHAPES_AUTOENCODER.embed_dim} + {SHAPES_MAP_CLASSES})",
           LAB_SHAPES_UNET.replace(in_channels=LAB_SHAPES_AUTOENCODER.embed_dim + SHAPES_MAP_CLASSES,
                                   context_dim=None, context_description=""),
           LAB_SHAPES_AUTOENCODER, resolution=(64, 64), prediction=Prediction.V),
)
_LAB_SDXL = PRESETS[0]

# --- SDXL's training tricks (notebook 06): eight models, so each is lab-sdxl at half its parameters -------------
# channel_mult (1, 1, 1) keeps the 16x16 and 8x8 levels (where nearly all the compute is) and narrows only the 4x4
# level and the middle block, 256 -> 128 channels: 2.6 M parameters, 5.3 MB in fp16, so the eight ship in 42 MB.
LAB_SDXL_SMALL = replace(
    _LAB_SDXL, name="lab-sdxl-small", unet=_LAB_SDXL.unet.replace(channel_mult=(1, 1, 1)),
    description="lab-sdxl with one width at every level (channel_mult (1, 1, 1), 2.6 M parameters): the U-Net of "
                "SDXL's ablations in notebook 06")
PRESETS += (LAB_SDXL_SMALL,)

# --- the refiner (SDXL §2.5): a second U-Net in lab-sdxl's latent space, trained on the lowest-noise timesteps ---

REFINER_TIMESTEPS = (0, 200)   # SDXL §2.5: "specialized on the first 200 (discrete) noise scales"
REFINER_SCALARS = 5            # original size (2), crop top-left (2), aesthetic (here: detail) score (1)
LAB_SDXL_REFINER = replace(
    LAB_SDXL_SMALL, name="lab-sdxl-refiner",
    unet=LAB_SDXL_SMALL.unet.replace(
        y_dim=LAB_CLIP_TEXT.projection_dim + REFINER_SCALARS * MICRO_CONDITIONING_DIM, y_description=(
            f"pooled lab-clip text {LAB_CLIP_TEXT.projection_dim} + {REFINER_SCALARS} scalars x "
            f"{MICRO_CONDITIONING_DIM}: original size, crop, detail score (the aesthetic score's stand-in)")),
    description=("tiny SDXL refiner: lab-sdxl-small's networks and lab-sdxl's latent space, one text tower, pooled "
                 "text + size/crop + a detail score (the aesthetic score's stand-in) as vector condition (SDXL §2.5)"))

# --- their conditioners --------------------------------------------------------------------------------------------


def lab_sdxl_conditioner(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """SDXL base's conditions; the lab replica trains with empty-prompt dropout, so it samples with the empty
    prompt it learned."""
    return sdxl_conditioner(preset, dropout, trainable, text_null=Null.NULL_INPUT)


def lab_refiner_conditioner(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """The refiner's conditions (SDXL's ``sd_xl_refiner``: prompt, pooled prompt, size/crop, aesthetic score), with
    empty-prompt dropout as lab-sdxl; the score reads the batch key ``aesthetic_score``."""
    conditions = text_conditions(preset, dropout, trainable, Null.NULL_INPUT) + size_conditions(preset, refiner=True)
    return ConditionerConfig(conditions, "prompt, pooled prompt, size/crop, detail score (aesthetic stand-in)")


def layout_conditioner(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """Box tokens for cross-attention, and the boxes' per-class coverage maps at the latent's size, concatenated."""
    f = preset.autoencoder.downsampling_factor
    embedder = LayoutEmbedderConfig(DATASETS["shapes"].num_classes, width=preset.unet.context_dim,
                                    raster_cells=(preset.resolution[0] // f, preset.resolution[1] // f))
    return ConditionerConfig((ConditionSpec("layout", ("boxes", "box_labels"), embedder, dropout),),
                             "boxes and their Shapes kinds: tokens, and coverage maps concatenated")


def segmentation_conditioner(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """The one-hot class map, averaged to the latent's size and concatenated to it (LDM §4.3.2)."""
    embedder = SegmentationEmbedderConfig(SHAPES_MAP_CLASSES, preset.autoencoder.downsampling_factor)
    return ConditionerConfig((ConditionSpec("segmentation", ("segmentation",), embedder, dropout, Null.ZEROS),),
                             "a Shapes segmentation map")


CONDITIONERS: dict[str, ConditionerOf] = {
    "lab-sdxl": lab_sdxl_conditioner, LAB_SDXL_SMALL.name: lab_sdxl_conditioner,
    LAB_SDXL_REFINER.name: lab_refiner_conditioner,
    "lab-layout": layout_conditioner, "lab-seg": segmentation_conditioner,
}
