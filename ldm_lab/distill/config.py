"""The configuration of an ADD run: objective, discriminator, the student's optimiser, the heads' optimiser."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ldm_lab.distill.add import ADDConfig
from ldm_lab.distill.discriminator import DiscriminatorConfig
from ldm_lab.training import TrainConfig

# The student's optimiser and the run's bookkeeping: a fine-tune of a pretrained U-Net at a low constant rate
# (a lab choice: 1e-5 to 2e-5 is the usual range for fine-tuning diffusion U-Nets), a short EMA, a checkpoint every
# 100 steps (about 2 CPU minutes at batch 8; a checkpoint of lab-emoji's student is 282 MB: student + heads, EMA,
# both optimizers), grids of 1- and 4-step samples.
STUDENT_TRAIN = TrainConfig(steps=2000, batch_size=8, lr=2e-5, warmup_steps=0, min_lr_ratio=1.0, ema_decay=0.99,
                            max_grad_norm=1.0, checkpoint_every=100, keep_checkpoints=2, log_every=5,
                            sample_every=250)
# Student updates per profile (--steps overrides). Measured on the 2-core CPU, one thread, lab-emoji + lab-clip:
# 1.2 CPU seconds per update at batch 8 (0.8 at batch 4), so the laptop run is about 40 CPU minutes.
DISTILL_STEPS = {"smoke": 2, "laptop": 2000, "gpu": 20_000}
SAMPLE_PROMPTS = ("grinning face", "red apple", "cat face", "rocket", "sun", "red heart", "pizza", "dog face")


@dataclass(frozen=True)
class DistillConfig:
    """Everything an ADD run needs besides the teacher and the data (recorded in the run's distill.json)."""

    add: ADDConfig = field(default_factory=ADDConfig)                 # the objective and the student's timesteps
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # the heads and conditioning
    train: TrainConfig = STUDENT_TRAIN                                # student optimiser, steps, batch, EMA, ...
    discriminator_lr: float = 1e-4                # the heads' Adam rate (follows the student's schedule's shape)
    discriminator_betas: tuple[float, float] = (0.0, 0.99)  # StyleGAN-T / Projected GAN's discriminator betas
    dataset: str = "emoji"                        # the real images x0 and captions (ldm_lab.data)
    sample_prompts: tuple[str, ...] = SAMPLE_PROMPTS  # prompts of the sample grids (1 and 4 student steps)

    def __post_init__(self) -> None:
        if not self.discriminator_lr > 0:
            raise ValueError(f"discriminator_lr must be > 0, not {self.discriminator_lr}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> DistillConfig:
        """Inverse of :meth:`to_dict` (JSON lists become tuples again)."""
        return cls(add=ADDConfig(**record["add"]),
                   discriminator=DiscriminatorConfig(**{**record["discriminator"],
                                                        "layers": tuple(record["discriminator"]["layers"])}),
                   train=TrainConfig(**{**record["train"], "betas": tuple(record["train"]["betas"])}),
                   discriminator_lr=record["discriminator_lr"],
                   discriminator_betas=tuple(record["discriminator_betas"]), dataset=record["dataset"],
                   sample_prompts=tuple(record["sample_prompts"]))
