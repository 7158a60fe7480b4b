"""The emoji text-to-image family's training targets (preset: ``ldm_lab.presets.emoji``): lab-emoji-large with the
CPU recipe (``recipes``) on its first stage lab-autoencoder (lab-autoencoder-symmetric's encoder with a wider
decoder), lab-emoji-distilled distilled from it, lab-emoji fine-tuned from that on one image per emoji, and
lab-emoji's networks on Shapes captions (lab-shapes)."""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.models import LatentDiffusionConfig
from ldm_lab.presets.lab import LAB_AUTOENCODER, LAB_EMOJI_AUTOENCODER
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.tasks.distillation import KnowledgeDistillation
from ldm_lab.tasks.targets.base import AutoencoderTarget, DiffusionTarget, TrainTarget
from ldm_lab.tasks.targets.recipes import (EMOJI_DECODER_STEPS, EMOJI_DISTILLATION_STEPS, EMOJI_FIRST_STAGE_LOSS,
                                           EMOJI_FIRST_STAGE_STEPS, EMOJI_FIRST_STAGE_TRAIN, EMOJI_OBJECT_STEPS,
                                           EMOJI_STEPS, EMOJI_TRAIN, LATENT_TRAIN)
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

LAB_EMOJI_DISTILLED = replace(
    LAB_EMOJI_LARGE, name="lab-emoji-distilled", description="lab-emoji-large distilled into a 6.6 M U-Net "
    "(BK-SDM's output-level distillation, started from the teacher's weights cut to its widths)",
    model=replace(LAB_EMOJI_LARGE.model, preset="lab-emoji"), steps=dict(EMOJI_DISTILLATION_STEPS),
    distillation=KnowledgeDistillation("lab-emoji-large"))
# lab-emoji: the distilled student, then taught its objects. Drawn from all 3,432 items, half of what a model sees
# are people in five skin tones, each seen five times as often as an object (and the best drawn); one item per
# emoji (emoji_base), from the data alone, with the names people type (aliases: "pizza", "house") half the time,
# and an EMA long enough (0.999) for a run of many thousand steps.
LAB_EMOJI = replace(
    LAB_EMOJI_DISTILLED, name="lab-emoji", description="lab-emoji-distilled fine-tuned on one image per emoji "
    "(no skin-tone repeats) with everyday aliases half the time", dataset="emoji_base",
    task=replace(LAB_EMOJI_LARGE.task, alias_rate=0.5), train=replace(EMOJI_TRAIN, ema_decay=0.999),
    steps=dict(EMOJI_OBJECT_STEPS), distillation=None, starts_from="lab-emoji-distilled")

# The first stage's encoder (its latent space): trained with its decoder, which lab-autoencoder then replaces.
LAB_AUTOENCODER_SYMMETRIC = AutoencoderTarget(
    "lab-autoencoder-symmetric", "the KL-f4 first stage of lab-emoji on 64x64 emoji: L1 + PatchGAN + KL (LDM App. G) "
    "with LDM's optimiser, on random 32x32 windows", "emoji", LAB_AUTOENCODER, EMOJI_FIRST_STAGE_LOSS,
    EMOJI_FIRST_STAGE_TRAIN, steps=dict(EMOJI_FIRST_STAGE_STEPS), crop=32)

TARGETS: tuple[TrainTarget, ...] = (
    LAB_EMOJI_LARGE,
    LAB_EMOJI_DISTILLED,
    LAB_EMOJI,
    DiffusionTarget("lab-shapes", "text-to-image latent diffusion on 64x64 Shapes scenes and their captions, with "
                    "lab-emoji's networks and first stage", "shapes", LatentDiffusionConfig("lab-emoji"),
                    DiffusionTask(sample_prompts=SHAPES_PROMPTS, guidance_scale=5.0), LATENT_TRAIN,
                    first_stage="lab-autoencoder", cache_latents=True),
    LAB_AUTOENCODER_SYMMETRIC,
    AutoencoderTarget("lab-autoencoder", "lab-emoji's first stage: lab-autoencoder-symmetric's encoder, frozen, "
                      "and a decoder twice as wide with one more block per level trained behind it (Asymmetric "
                      "VQGAN)", "emoji", LAB_EMOJI_AUTOENCODER, EMOJI_FIRST_STAGE_LOSS, EMOJI_FIRST_STAGE_TRAIN,
                      steps=dict(EMOJI_DECODER_STEPS), crop=32, starts_from=LAB_AUTOENCODER_SYMMETRIC.name,
                      freeze_encoder=True),
)
