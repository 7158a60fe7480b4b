"""The configuration of a distillation run: the method (ADD, or LCM as its baseline) and its objective, ADD's
discriminator, the student's optimiser, the heads' optimiser."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ldm_lab.distill.add import ADDConfig
from ldm_lab.distill.discriminator import DiscriminatorConfig
from ldm_lab.distill.lcm import LCMConfig
from ldm_lab.json_files import read_json
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
RECORD_FILE = "distill.json"   # a run directory's record of its teacher and DistillConfig
METHODS = ("add", "lcm")
SAMPLE_PROMPTS = ("grinning face", "red apple", "cat face", "rocket", "sun", "red heart", "pizza", "dog face")


@dataclass(frozen=True)
class DistillConfig:
    """Everything a distillation run needs besides the teacher and the data (recorded in the run's distill.json)."""

    method: Literal["add", "lcm"] = "add"        # ADD (Sauer et al. 2023), or latent consistency distillation
    add: ADDConfig = field(default_factory=ADDConfig)                 # ADD's objective and the student's timesteps
    lcm: LCMConfig = field(default_factory=LCMConfig)                 # LCM's objective (method "lcm" only)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)  # the heads and conditioning
    train: TrainConfig = STUDENT_TRAIN                                # student optimiser, steps, batch, EMA, ...
    discriminator_lr: float = 1e-4                # the heads' Adam rate (follows the student's schedule's shape)
    discriminator_betas: tuple[float, float] = (0.0, 0.99)  # StyleGAN-T / Projected GAN's discriminator betas
    dataset: str = "emoji"                        # the real images x0 and captions (ldm_lab.data)
    sample_prompts: tuple[str, ...] = SAMPLE_PROMPTS  # prompts of the sample grids (1 and 4 student steps)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"DistillConfig.method must be one of {METHODS} (ADD, or latent consistency "
                             f"distillation), not {self.method!r}")
        if not self.discriminator_lr > 0:
            raise ValueError(f"discriminator_lr must be > 0, not {self.discriminator_lr}")

    @property
    def objective(self) -> ADDConfig | LCMConfig:
        """The method's own configuration: what the student trains at and how it samples (``.sampling(steps)``)."""
        return self.add if self.method == "add" else self.lcm

    def objective_key(self) -> tuple:
        """What makes two runs the same experiment (a resume may not change it): method, objective and, for ADD,
        the discriminator; not the optimiser's steps or bookkeeping."""
        return (self.method, self.objective) + ((self.discriminator,) if self.method == "add" else ())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> DistillConfig:
        """Inverse of :meth:`to_dict` (JSON lists become tuples again; a record from before LCM is an ADD run)."""
        return cls(method=record.get("method", "add"), add=ADDConfig(**record["add"]),
                   lcm=LCMConfig(**record.get("lcm", {})),
                   discriminator=DiscriminatorConfig(**{**record["discriminator"],
                                                        "layers": tuple(record["discriminator"]["layers"])}),
                   train=TrainConfig(**{**record["train"], "betas": tuple(record["train"]["betas"])}),
                   discriminator_lr=record["discriminator_lr"],
                   discriminator_betas=tuple(record["discriminator_betas"]), dataset=record["dataset"],
                   sample_prompts=tuple(record["sample_prompts"]))


def read_record(run_dir: str | Path) -> tuple[str, DistillConfig]:
    """The teacher reference and the :class:`DistillConfig` a distillation run's distill.json records."""
    record = read_json(Path(run_dir) / RECORD_FILE, "Pass the --out folder of an `ldm-lab distill` run.")
    return record["teacher"], DistillConfig.from_dict(record["config"])
