"""The lab's SDXL refiner (Podell et al. 2023, §2.5): a second U-Net in the base's latent space, trained only on the
lowest-noise 200 of the 1000 timesteps, conditioned as SDXL's refiner.

SDXL's refiner differs from its base in what it is conditioned on: one text tower (bigG) instead of two, and an
aesthetic score in place of the target size in the vector condition (1280 + 5 x 256 = 2560). The lab refiner does
the same on lab-sdxl's networks: lab-clip's text tower, the pooled prompt and 5 Fourier-embedded scalars
(original size, crop, and a *detail score*: ``ldm_lab.metrics.sharpness.detail_score``, our measurable stand-in
for the LAION aesthetic score, sampled at 6.0 and guided away from 2.5 as SDXL's refiner is).

    model = LatentDiffusion(LatentDiffusionConfig(LAB_SDXL_REFINER, timestep_range=REFINER_TIMESTEPS))
"""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.conditioning.base import Null
from ldm_lab.conditioning.conditioner import ConditionerConfig
from ldm_lab.conditioning.presets import CONDITIONERS, size_conditions, text_conditions
from ldm_lab.presets import LAB_CLIP_TEXT, MICRO_CONDITIONING_DIM, Preset, get_preset

REFINER_TIMESTEPS = (0, 200)   # SDXL §2.5: "specialized on the first 200 (discrete) noise scales"
REFINER_SCALARS = 5            # original size (2), crop top-left (2), aesthetic (here: detail) score (1)


def _lab_refiner_preset() -> Preset:
    base = get_preset("lab-sdxl")
    y_dim = LAB_CLIP_TEXT.projection_dim + REFINER_SCALARS * MICRO_CONDITIONING_DIM
    unet = base.unet.replace(y_dim=y_dim, y_description=(
        f"pooled lab-clip text {LAB_CLIP_TEXT.projection_dim} + {REFINER_SCALARS} scalars x {MICRO_CONDITIONING_DIM}: "
        "original size, crop, detail score (the aesthetic score's stand-in)"))
    return replace(base, name="lab-sdxl-refiner", unet=unet, description=(
        "tiny SDXL refiner: lab-sdxl's networks and latent space, one text tower, pooled text + size/crop + a detail "
        "score (the aesthetic score's stand-in) as vector condition (SDXL §2.5)"))


LAB_SDXL_REFINER = _lab_refiner_preset()


def _lab_sdxl_refiner(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """The refiner's conditions (SDXL's ``sd_xl_refiner``: prompt, pooled prompt, size/crop, aesthetic score), with
    empty-prompt dropout as lab-sdxl; the score reads the batch key ``aesthetic_score``."""
    conditions = text_conditions(preset, dropout, trainable, Null.NULL_INPUT) + size_conditions(preset, refiner=True)
    return ConditionerConfig(conditions, "prompt, pooled prompt, size/crop, detail score (aesthetic stand-in)")


CONDITIONERS[LAB_SDXL_REFINER.name] = _lab_sdxl_refiner
