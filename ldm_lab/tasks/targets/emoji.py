"""The emoji text-to-image family's training targets (preset: ``ldm_lab.presets.emoji``): lab-emoji-large with the
CPU recipe (``recipes``) on its first stage lab-autoencoder, lab-emoji distilled from it, and lab-emoji's networks
on Shapes captions (lab-shapes)."""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.models import LatentDiffusionConfig
from ldm_lab.presets.lab import LAB_AUTOENCODER
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.tasks.distillation import KnowledgeDistillation
from ldm_lab.tasks.targets.base import AutoencoderTarget, DiffusionTarget, TrainTarget
from ldm_lab.tasks.targets.recipes import (EMOJI_DISTILLATION_STEPS, EMOJI_FIRST_STAGE_LOSS, EMOJI_FIRST_STAGE_STEPS,
                                           EMOJI_FIRST_STAGE_TRAIN, EMOJI_STEPS, EMOJI_TRAIN, LATENT_TRAIN)
from ldm_lab.tasks.targets.shapes import SHAPES_PROMPTS

EMOJI_PROMPTS = ("grinning face", "red apple", "cat face", "rocket", "sun", "red heart", "pizza", "dog face",
                 "tree", "car", "ghost", "star", "fire", "banana", "house", "flag of france")

# lab-emoji-large trains on its captions only (alias_rate 0, as it was trained): fine-tuned with aliases half the
# time, it drew alias prompts ("pizza") better but its own captions no better (notebook 00's recognition table).
LAB_EMOJI_LARGE = DiffusionTarget(
    "lab-emoji-large", "text-to-image latent diffusion on 64x64 emoji, on a lab-autoencoder first stage, with the "
    "CPU recipe (cached latents and prompts, a 16 M U-Net, min-SNR)", "emoji",
    LatentDiffusionConfig("lab-emoji-large", snr_gamma=5.0),
    DiffusionTask(sample_prompts=EMOJI_PROMPTS, guidance_scale=3.0), EMOJI_TRAIN, steps=dict(EMOJI_STEPS),
    first_stage="lab-autoencoder", cache_latents=True)

TARGETS: tuple[TrainTarget, ...] = (
    LAB_EMOJI_LARGE,
    replace(LAB_EMOJI_LARGE, name="lab-emoji", description="lab-emoji-large distilled into a 6.6 M U-Net (BK-SDM's "
            "output-level distillation, started from the teacher's weights cut to its widths)",
            model=replace(LAB_EMOJI_LARGE.model, preset="lab-emoji"), steps=dict(EMOJI_DISTILLATION_STEPS),
            distillation=KnowledgeDistillation("lab-emoji-large")),
    DiffusionTarget("lab-shapes", "text-to-image latent diffusion on 64x64 Shapes scenes and their captions, with "
                    "lab-emoji's networks and first stage", "shapes", LatentDiffusionConfig("lab-emoji"),
                    DiffusionTask(sample_prompts=SHAPES_PROMPTS, guidance_scale=5.0), LATENT_TRAIN,
                    first_stage="lab-autoencoder", cache_latents=True),
    AutoencoderTarget("lab-autoencoder", "the KL-f4 first stage of lab-emoji on 64x64 emoji: L1 + PatchGAN + KL "
                      "(LDM App. G) with LDM's optimiser, on random 32x32 windows", "emoji", LAB_AUTOENCODER,
                      EMOJI_FIRST_STAGE_LOSS, EMOJI_FIRST_STAGE_TRAIN, steps=dict(EMOJI_FIRST_STAGE_STEPS),
                      crop=32),
)
