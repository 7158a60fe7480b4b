"""The compression ablation's training targets (LDM §4.1, Tab. 8, Fig. 6; presets: ``ldm_lab.presets.compression``):
a first stage per regulariser and f, and LDM-f.

Every lab first stage of the ablation trains with LDM's objective and optimiser (its GAN weight per regulariser).
LDM-{1..32} share one setup (steps, batch, schedule, sampler), so only f differs, and keep all their checkpoints:
Fig. 6 measures FID against training steps. They are class-conditional; their sample grids and FIDs draw without
guidance, as Fig. 6.
"""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.models import LatentDiffusionConfig
from ldm_lab.nn.autoencoder import Regularizer
from ldm_lab.presets.compression import COMPRESSION_FACTORS, lab_first_stage
from ldm_lab.tasks.autoencoder import AutoencoderLossConfig, ldm_first_stage_train_config
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.tasks.targets.base import AutoencoderTarget, DiffusionTarget, TrainTarget, cycling_labels
from ldm_lab.tasks.targets.recipes import LATENT_TRAIN

ABLATION_FIRST_STAGE_TRAIN = ldm_first_stage_train_config(16, 1e-4, checkpoint_every=250, sample_every=500)
# Every first stage trains the same number of steps (not seconds: f = 1 and f = 32 differ in cost), the GAN on for
# the last 300 steps of a laptop run (LDM's disc_start is 50,001 of runs a hundred times longer than ours).
ABLATION_FIRST_STAGE_STEPS = {"smoke": 20, "laptop": 700, "gpu": 10_000}
ABLATION_DISC_START = 400
ABLATION_STEPS = {"smoke": 20, "laptop": 1500, "gpu": 6000}  # optimizer steps of every LDM-f in each profile
ABLATION_TRAIN = replace(LATENT_TRAIN, checkpoint_every=250, keep_checkpoints=100)  # 6 points of Fig. 6 (laptop)


def first_stage_target(regularizer: Regularizer, f: int) -> str:
    """The target that trains the lab first stage ``lab_first_stage(regularizer, f)``."""
    return f"lab-{regularizer.value}-f{f}"


def ablation_target(f: int) -> str:
    """The target that trains LDM-``f``."""
    return f"lab-ldm-{f}"


def _lab_first_stage(regularizer: Regularizer, f: int) -> AutoencoderTarget:
    return AutoencoderTarget(first_stage_target(regularizer, f),
                             f"lab first stage {regularizer.name}-f{f} on 64x64 emoji, (LDM Tab. 8 in miniature)",
                             "emoji", lab_first_stage(regularizer, f),
                             AutoencoderLossConfig.for_regularizer(regularizer, disc_start=ABLATION_DISC_START),
                             ABLATION_FIRST_STAGE_TRAIN, steps=dict(ABLATION_FIRST_STAGE_STEPS))


def _ablation_ldm(f: int) -> DiffusionTarget:
    where = "in pixel space" if f == 1 else f"on the lab-vq-f{f} first stage"
    return DiffusionTarget(ablation_target(f), f"LDM-{f} of the compression ablation: class-conditional 64x64 emoji "
                           f"{where} (LDM §4.1, Fig. 6)", "emoji", LatentDiffusionConfig(ablation_target(f)),
                           DiffusionTask(sample_labels=cycling_labels("emoji")),
                           ABLATION_TRAIN, steps=dict(ABLATION_STEPS),
                           first_stage=first_stage_target(Regularizer.VQ, f) if f > 1 else None)


TARGETS: tuple[TrainTarget, ...] = (
    *(_lab_first_stage(regularizer, f) for regularizer in Regularizer for f in COMPRESSION_FACTORS),
    *(_ablation_ldm(f) for f in COMPRESSION_FACTORS),
)
