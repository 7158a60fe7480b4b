"""The Shapes conditioning family's training targets (presets: ``ldm_lab.presets.shapes``): the first stage of the
Shapes models, lab-layout, lab-seg and lab-sdxl (notebook 04), and SDXL's training tricks as ablations of lab-sdxl
(notebook 06; Podell et al. 2023, §2.2-2.5).

Every ablation is lab-sdxl's target on a smaller U-Net (``lab-sdxl-small``, 2.6 M parameters, so that all eight
ship) with one thing changed by ``dataclasses.replace`` (its dataset, or its model config), trained for the same
steps at the same batch size, so the variants of one experiment cost the same:

* size conditioning, Tab. 2 in miniature: ``lab-sdxl-large-only`` (small originals discarded), ``lab-sdxl-no-size``
  (all data, original size fixed to the target size) and ``lab-sdxl-size`` (all data, size-conditioned);
* crop conditioning: ``lab-sdxl-size`` (crops recorded) against ``lab-sdxl-no-crop`` (crop fixed to (0, 0));
* aspect buckets (§2.3): ``lab-sdxl-buckets`` against ``lab-sdxl-square`` (square originals only) and
  ``lab-sdxl-centre-crop`` (every original centre-cropped to 64²), each fine-tuned from ``lab-sdxl-size`` as SDXL
  fine-tunes its base; all three may be sampled at any bucket's size;
* the refiner (§2.5): ``lab-sdxl-refiner``, trained on timesteps [0, 200) only, with a detail score as its aesthetic
  score; ``ldm_lab.tasks.refiner.generate_with_refiner`` hands it the base's latent at the switch.

Each trains on ``lab-shapes-autoencoder``'s first stage, like lab-sdxl:
``ldm-lab train lab-sdxl-no-size --first-stage lab-shapes-autoencoder --out runs/lab-sdxl-no-size``.
"""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.models import LatentDiffusionConfig
from ldm_lab.presets.shapes import LAB_SDXL_REFINER, LAB_SHAPES_AUTOENCODER, REFINER_TIMESTEPS
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.tasks.refiner import LowNoiseTask
from ldm_lab.tasks.targets.base import AutoencoderTarget, DiffusionTarget, TrainTarget
from ldm_lab.tasks.targets.recipes import (CONDITIONED_TRAIN, EMOJI_FIRST_STAGE_LOSS, EMOJI_FIRST_STAGE_STEPS,
                                           EMOJI_FIRST_STAGE_TRAIN)

SHAPES_PROMPTS = ("a large red circle", "a small blue square", "a large green triangle", "a medium yellow star",
                  "a large red circle left of a small blue square", "a small purple diamond above a large green circle",
                  "a large orange square", "a small red star right of a large blue triangle")
SHAPES_STEPS = {"smoke": 20, "laptop": 5000, "gpu": 50_000}
# The Shapes models decode with a first stage trained on Shapes, with lab-autoencoder's recipe. It trains on
# shapes_multiscale, lab-sdxl's data, which holds sharp scenes and blurred upscaled small originals alike: trained
# on sharp scenes only, its decoder drew every latent equally sharp (Laplacian energy of reconstructions 1.3-1.4
# x 1e-3 for originals of 16 to 128 px, where the real images range 0.12 to 1.4), which erased the very signal
# that size conditioning needs.
SHAPES_FIRST_STAGE = "lab-shapes-autoencoder"

LAB_SDXL = DiffusionTarget(
    "lab-sdxl", "tiny SDXL on 64x64 Shapes resized from 0.25x-2x originals and cropped: prompt, pooled prompt and "
    "size/crop micro-conditioning (SDXL §2.2)", "shapes_multiscale", LatentDiffusionConfig("lab-sdxl", snr_gamma=5.0),
    DiffusionTask(sample_prompts=SHAPES_PROMPTS, guidance_scale=5.0), CONDITIONED_TRAIN, steps=dict(SHAPES_STEPS),
    first_stage=SHAPES_FIRST_STAGE, cache_latents=True)

CONDITIONING_MODELS: tuple[TrainTarget, ...] = (
    AutoencoderTarget(SHAPES_FIRST_STAGE, "the KL-f4 first stage of the Shapes models (lab-layout, lab-seg, lab-sdxl) "
                      "on 64x64 Shapes scenes from 0.25x-2x originals: lab-autoencoder's design and recipe",
                      "shapes_multiscale", LAB_SHAPES_AUTOENCODER, EMOJI_FIRST_STAGE_LOSS, EMOJI_FIRST_STAGE_TRAIN, steps=dict(EMOJI_FIRST_STAGE_STEPS), crop=32),
    DiffusionTarget("lab-layout", "layout-to-image latent diffusion on 64x64 Shapes: boxes as (l, b, c) tokens "
                    "through a transformer encoder, cross-attended (LDM Tab. 17)", "shapes",
                    LatentDiffusionConfig("lab-layout", snr_gamma=5.0), DiffusionTask(guidance_scale=3.0),
                    CONDITIONED_TRAIN, steps=dict(SHAPES_STEPS), first_stage=SHAPES_FIRST_STAGE,
                    sample_from_validation=True, cache_latents=True),
    DiffusionTarget("lab-seg", "segmentation-to-image latent diffusion on 64x64 Shapes: the one-hot class map "
                    "concatenated to the latent (LDM §4.3.2)", "shapes",
                    LatentDiffusionConfig("lab-seg", snr_gamma=5.0),
                    DiffusionTask(guidance_scale=3.0), CONDITIONED_TRAIN, steps=dict(SHAPES_STEPS),
                    first_stage=SHAPES_FIRST_STAGE, sample_from_validation=True, cache_latents=True),
    LAB_SDXL,
)


# SDXL's ablations train the 2.6 M U-Net of lab-sdxl-small (eight of them ship), each from fresh weights for the
# same steps, except the aspect-bucket trio: SDXL applies multi-aspect training "as a finetuning stage after
# pretraining the model at a fixed aspect-ratio and resolution" (§2.3), so the three fine-tune lab-sdxl-size for
# the same (fewer) steps.
SDXL_ABLATION_STEPS = {"smoke": 20, "laptop": 3000, "gpu": 50_000}
SDXL_BUCKET_STEPS = {"smoke": 20, "laptop": 1000, "gpu": 20_000}
SDXL_ABLATION_BASE = replace(LAB_SDXL, model=replace(LAB_SDXL.model, preset="lab-sdxl-small"),
                             steps=dict(SDXL_ABLATION_STEPS))


def _variant(name: str, description: str, dataset: str | None = None, task: DiffusionTask | None = None,
             starts_from: str | None = None, **model_changes) -> DiffusionTarget:
    """The ablations' base (lab-sdxl on the small U-Net) with another name and description, and another dataset,
    task and/or model config fields; ``starts_from``: fine-tuned from that variant for ``SDXL_BUCKET_STEPS``."""
    base = SDXL_ABLATION_BASE
    return replace(base, name=name, description=description, dataset=dataset or base.dataset,
                   task=task or base.task, model=replace(base.model, **model_changes), starts_from=starts_from,
                   steps=dict(SDXL_BUCKET_STEPS if starts_from else base.steps))


SDXL_ABLATIONS: tuple[DiffusionTarget, ...] = (
    _variant("lab-sdxl-large-only", "lab-sdxl-small trained only on originals at least as large as 64x64 (SDXL "
             "Tab. 2, '512² only': the small ones discarded, 43 % of the data)", "shapes_multiscale_large"),
    _variant("lab-sdxl-no-size", "lab-sdxl-small on all data without size conditioning (SDXL Tab. 2): "
             "original_size fixed to the target size, so the input is constant", "shapes_multiscale_no_size"),
    _variant("lab-sdxl-size", "lab-sdxl-small on all data with size and crop conditioning (SDXL Tab. 2, and the "
             "crop-conditioned arm of §2.2), the same steps as its ablations"),
    _variant("lab-sdxl-no-crop", "lab-sdxl-small on random crops without crop conditioning (SDXL §2.2): "
             "crop_top_left fixed to (0, 0)", "shapes_multiscale_no_crop"),
    _variant("lab-sdxl-buckets", "lab-sdxl-size fine-tuned on multi-aspect originals, each at its nearest of 5 "
             "aspect buckets (128x32 ... 32x128, about 64² pixels), batches from one bucket, the bucket as target "
             "size (SDXL §2.3)", "shapes_buckets", starts_from="lab-sdxl-size", multi_aspect=True),
    _variant("lab-sdxl-square", "lab-sdxl-size fine-tuned on square originals only, at 64x64 (the square-only "
             "baseline of SDXL §2.3); samples at any bucket's size", "shapes_square", starts_from="lab-sdxl-size",
             multi_aspect=True),
    _variant("lab-sdxl-centre-crop", "lab-sdxl-size fine-tuned on the multi-aspect originals of lab-sdxl-buckets, "
             "resized to cover 64x64 and centre-cropped (the pre-SDXL pipeline); samples at any bucket's size",
             "shapes_centre_crop", starts_from="lab-sdxl-size", multi_aspect=True),
    _variant("lab-sdxl-refiner", "tiny SDXL refiner: lab-sdxl-small's networks with one text tower, size/crop and "
             "a detail score, trained only on the 200 lowest-noise timesteps (SDXL §2.5)",
             "shapes_multiscale_scored", LowNoiseTask(guidance_scale=LAB_SDXL.task.guidance_scale),
             preset=LAB_SDXL_REFINER, timestep_range=REFINER_TIMESTEPS),
)

TARGETS: tuple[TrainTarget, ...] = CONDITIONING_MODELS + SDXL_ABLATIONS
