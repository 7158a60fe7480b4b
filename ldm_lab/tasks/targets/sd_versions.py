"""The Stable Diffusion versions in miniature (presets: ``ldm_lab.presets.sd_versions``; notebook 05).

* **Three versions at matched compute**: ``lab-sd1-like``, ``lab-sd2-like`` and ``lab-sdxl-like`` train from fresh
  U-Nets for the same steps at the same batch with lab-emoji's CPU recipe (cached latents and prompts, min-SNR-5,
  batch 16, EMA 0.995), with 10 % of prompts dropped for classifier-free guidance. The SDXL-like model trains on
  the same emoji drawn at several sizes and cropped (``emoji_multiscale``), which its size and crop conditions
  describe. ``lab-sd2-like-ztsnr`` (the same budget) adds zero terminal SNR to the SD2-like model.
* **The v1.x lineage** (SD v1-1 to v1-3: 256² pretraining, 512² continuation, then 10 % text dropout): the SD1-like
  model pretrained at 32² (``lab-sd1-32px``), continued at 64² (``lab-sd1-64px``), continued again with 10 %
  caption dropout (``lab-sd1-cfg``), each stage a third of the matched steps, so the lineage as a whole does
  less U-Net work than one of the three versions (its first third runs on 8x8 latents).
* **1.5-inpainting**: ``lab-sd1-inpaint`` fine-tuned from a trained ``lab-sd1-like`` with its 5 new input channels
  starting at zero (so it starts out computing what the text model computes), on random masks
  (``ldm_lab.tasks.inpainting``).
"""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.models import LatentDiffusionConfig
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.tasks.inpainting import InpaintingTask
from ldm_lab.tasks.targets.base import DiffusionTarget, TrainTarget
from ldm_lab.tasks.targets.emoji import EMOJI_PROMPTS
from ldm_lab.tasks.targets.recipes import EMOJI_TRAIN

VERSION_STEPS = {"smoke": 20, "laptop": 10_000, "gpu": 50_000}  # each of the three versions
LINEAGE_STEPS = {profile: max(1, steps // 3) for profile, steps in VERSION_STEPS.items()}  # each lineage stage
INPAINT_STEPS = {"smoke": 20, "laptop": 3000, "gpu": 20_000}
VERSIONS_TRAIN = replace(EMOJI_TRAIN, checkpoint_every=250, sample_every=1000)
VERSION_TASK = DiffusionTask(sample_prompts=EMOJI_PROMPTS, guidance_scale=3.0)


def _version(name: str, what: str, dataset: str = "emoji_base", dropout: float = 0.1,
             steps: dict[str, int] = VERSION_STEPS, preset: str | None = None, **changes) -> DiffusionTarget:
    return DiffusionTarget(name, what, dataset, LatentDiffusionConfig(preset or name, condition_dropout=dropout,
                                                                      snr_gamma=5.0),
                           VERSION_TASK, VERSIONS_TRAIN, steps=dict(steps), first_stage="lab-autoencoder",
                           **{"cache_latents": True, **changes})


LAB_SD1_LIKE = _version("lab-sd1-like", "SD 1.x in miniature on 64x64 emoji (lab-clip's last layer, eps)")
TARGETS: tuple[TrainTarget, ...] = (
    LAB_SD1_LIKE,
    _version("lab-sd2-like", "SD 2.x in miniature on 64x64 emoji (lab-clip's penultimate layer, v-prediction)"),
    _version("lab-sd2-like-ztsnr", "lab-sd2-like with zero terminal SNR (Lin et al. 2023): the eps-vs-v brightness "
             "comparison's third model"),
    _version("lab-sdxl-like", "SDXL base in miniature on 64x64 emoji drawn at several sizes and cropped (two text "
             "readouts, pooled text + size/crop micro-conditioning)", dataset="emoji_multiscale"),
    _version("lab-sd1-32px", "the v1.x lineage in miniature, stage 1: lab-sd1-like pretrained at 32x32, no caption "
             "dropout", dropout=0.0, steps=LINEAGE_STEPS, preset="lab-sd1-like-32"),
    _version("lab-sd1-64px", "the v1.x lineage, stage 2: lab-sd1-32px continued at 64x64, no caption dropout",
             dropout=0.0, steps=LINEAGE_STEPS, preset="lab-sd1-like", starts_from="lab-sd1-32px"),
    _version("lab-sd1-cfg", "the v1.x lineage, stage 3: lab-sd1-64px continued with 10 % caption dropout",
             steps=LINEAGE_STEPS, preset="lab-sd1-like", starts_from="lab-sd1-64px"),
    replace(_version("lab-sd1-inpaint", "SD 1.5-inpainting in miniature: lab-sd1-like fine-tuned with the mask and "
                     "the masked image's latent concatenated, on random masks", steps=INPAINT_STEPS,
                     starts_from="lab-sd1-like", cache_latents=False),
            task=InpaintingTask(sample_prompts=EMOJI_PROMPTS, guidance_scale=3.0)),
)
