"""The Fashion-MNIST family's training targets (presets: ``ldm_lab.presets.fashion_mnist``): the pixel-space DDPMs
lab-pixel and lab-class, and the latent lab-fmnist on its own 1-channel first stage."""

from __future__ import annotations

from ldm_lab.models import LatentDiffusionConfig
from ldm_lab.presets.fashion_mnist import LAB_FMNIST_AUTOENCODER
from ldm_lab.tasks.autoencoder import ldm_first_stage_train_config
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.tasks.targets.base import AutoencoderTarget, DiffusionTarget, TrainTarget, cycling_labels
from ldm_lab.tasks.targets.recipes import (CONDITIONED_TRAIN, EMOJI_FIRST_STAGE_LOSS, EMOJI_FIRST_STAGE_STEPS,
                                           PIXEL_TRAIN)

TARGETS: tuple[TrainTarget, ...] = (
    DiffusionTarget("lab-pixel", "unconditional DDPM on 28x28 Fashion-MNIST pixels (preset lab-pixel)",
                    "fashion_mnist", LatentDiffusionConfig("lab-pixel"), DiffusionTask(), PIXEL_TRAIN),
    DiffusionTarget("lab-class", "class-conditional Fashion-MNIST pixels with a null class for CFG (lab-class)",
                    "fashion_mnist", LatentDiffusionConfig("lab-class"),
                    DiffusionTask(sample_labels=cycling_labels("fashion_mnist"), guidance_scale=3.0), PIXEL_TRAIN),
    AutoencoderTarget("lab-fmnist-autoencoder", "the 1-channel KL-f4 first stage of lab-fmnist on 32x32 "
                      "Fashion-MNIST: lab-autoencoder's objective and optimiser (no perceptual term: lab-clip sees "
                      "RGB only)",
                      "fashion_mnist", LAB_FMNIST_AUTOENCODER, EMOJI_FIRST_STAGE_LOSS,
                      ldm_first_stage_train_config(32, 4e-4, checkpoint_every=500, sample_every=500,
                                                   keep_checkpoints=2),
                      steps=dict(EMOJI_FIRST_STAGE_STEPS), resolution=(32, 32)),
    DiffusionTarget("lab-fmnist", "class-conditional latent diffusion on 32x32 Fashion-MNIST: the class as one "
                    "learned cross-attention token (LDM's cin models), null class for CFG", "fashion_mnist",
                    LatentDiffusionConfig("lab-fmnist", snr_gamma=5.0),
                    DiffusionTask(sample_labels=cycling_labels("fashion_mnist"), guidance_scale=3.0),
                    CONDITIONED_TRAIN, first_stage="lab-fmnist-autoencoder", cache_latents=True),
)
