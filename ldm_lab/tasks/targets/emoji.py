"""The emoji text-to-image family's training targets (preset: ``ldm_lab.presets.emoji``): lab-emoji with the CPU
recipe (``recipes``) on its first stage lab-autoencoder, and the same networks on Shapes captions (lab-shapes)."""

from __future__ import annotations

from ldm_lab.models import LatentDiffusionConfig
from ldm_lab.presets.lab import LAB_AUTOENCODER
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.tasks.targets.base import AutoencoderTarget, DiffusionTarget, TrainTarget
from ldm_lab.tasks.targets.recipes import (EMOJI_FIRST_STAGE_LOSS, EMOJI_FIRST_STAGE_STEPS, EMOJI_FIRST_STAGE_TRAIN,
                                           EMOJI_STEPS, EMOJI_TRAIN, LATENT_TRAIN)
from ldm_lab.tasks.targets.shapes import SHAPES_PROMPTS

EMOJI_PROMPTS = ("grinning face", "red apple", "cat face", "rocket", "sun", "red heart", "pizza", "dog face",
                 "tree", "car", "ghost", "star", "fire", "banana", "house", "flag of france")

# lab-emoji trains on its captions only (alias_rate 0, as the shipped model was): fine-tuned with aliases half the
# time, it drew alias prompts ("pizza") better but its own captions no better (notebook 00's recognition table).
TARGETS: tuple[TrainTarget, ...] = (
    DiffusionTarget("lab-emoji", "text-to-image latent diffusion on 64x64 emoji, on a lab-autoencoder first "
                    "stage, with the CPU recipe (cached latents and prompts, a 16 M U-Net, min-SNR)", "emoji",
                    LatentDiffusionConfig("lab-emoji", snr_gamma=5.0),
                    DiffusionTask(sample_prompts=EMOJI_PROMPTS, guidance_scale=3.0), EMOJI_TRAIN,
                    steps=dict(EMOJI_STEPS), first_stage="lab-autoencoder", cache_latents=True),
    DiffusionTarget("lab-shapes", "text-to-image latent diffusion on 64x64 Shapes scenes and their captions, with "
                    "lab-emoji's networks and first stage", "shapes", LatentDiffusionConfig("lab-emoji"),
                    DiffusionTask(sample_prompts=SHAPES_PROMPTS, guidance_scale=5.0), LATENT_TRAIN,
                    first_stage="lab-autoencoder", cache_latents=True),
    AutoencoderTarget("lab-autoencoder", "the KL-f4 first stage of lab-emoji on 64x64 emoji: L1 + PatchGAN + KL "
                      "(LDM App. G) with LDM's optimiser, on random 32x32 windows", "emoji", LAB_AUTOENCODER,
                      EMOJI_FIRST_STAGE_LOSS, EMOJI_FIRST_STAGE_TRAIN, steps=dict(EMOJI_FIRST_STAGE_STEPS),
                      crop=32),
)
