"""The training recipes the lab families share, measured on a 2-core CPU (see the time-to-quality benchmark,
``ldm_lab.quality``).

lab-emoji-large's CPU recipe (lab-emoji is it distilled into a smaller U-Net, then fine-tuned), which the
conditioning models and the Shapes and Fashion-MNIST first stages reuse:

* first stage: LDM's objective and optimiser (two Adams at betas (0.5, 0.9), no clipping), on 32x32 windows
  (a quarter of the cost of a whole image), a higher lr than LDM's 4.5e-6 x batch (we have minutes, not days),
  and the GAN on after 1,500 batches, once reconstructions are no longer blurry;
* diffusion: latents and prompts encoded once (cache_latents; the frozen text tower's memo), a 16 M U-Net,
  batch 16 for more updates in the same time, min-SNR-5 weighting (Hang et al. 2023: faster convergence), and an
  EMA short enough (0.995) for a run of a few thousand steps.
"""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.tasks.autoencoder import AutoencoderLossConfig, ldm_first_stage_train_config
from ldm_lab.training import TrainConfig

EMOJI_FIRST_STAGE_LOSS = AutoencoderLossConfig(perceptual_weight=0.0, disc_start=1500)
EMOJI_FIRST_STAGE_TRAIN = ldm_first_stage_train_config(16, 4e-4, checkpoint_every=500, sample_every=500,
                                                       keep_checkpoints=2)
EMOJI_FIRST_STAGE_STEPS = {"smoke": 20, "laptop": 4000, "gpu": 50_000}
EMOJI_DECODER_STEPS = {"smoke": 20, "laptop": 2000, "gpu": 50_000}  # lab-autoencoder's wider decoder, encoder frozen
EMOJI_STEPS = {"smoke": 20, "laptop": 8000, "gpu": 100_000}
EMOJI_DISTILLATION_STEPS = {"smoke": 20, "laptop": 4000, "gpu": 50_000}
EMOJI_OBJECT_STEPS = {"smoke": 20, "laptop": 40_000, "gpu": 50_000}  # lab-emoji's fine-tune on one image per
# emoji (the shipped model: two runs of 16,000 steps, then the checkpoint at step 8,000 of a third 16,000-step run,
# each restarting the schedule)

PIXEL_TRAIN = TrainConfig(batch_size=64, lr=2e-4, warmup_steps=200, ema_decay=0.999, checkpoint_every=500,
                          sample_every=500)
LATENT_TRAIN = replace(PIXEL_TRAIN, batch_size=32)
EMOJI_TRAIN = replace(PIXEL_TRAIN, batch_size=16, lr=2e-4, warmup_steps=200, ema_decay=0.995,
                      checkpoint_every=250, sample_every=1000)
# The conditioning models train with lab-emoji's recipe (cached latents, min-SNR-5, batch 16, a short EMA) for
# the minutes a 2-core CPU can give each of them.
CONDITIONED_TRAIN = EMOJI_TRAIN
