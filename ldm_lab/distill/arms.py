"""ADD's Tab. 1 in miniature: the arms of the ablation, each a :class:`DistillConfig` at equal student updates.

    ldm-lab distill lab-emoji --arm distillation-only --out runs/distillation-only --steps 400

Each arm changes one thing; row b changes how the heads train (their rate, and no DiffAugment). The paper varies
each row from its full objective (adversarial + 2.5 x distillation); rows (c) and (f) here vary from the arm that
works best at lab scale, distillation alone (notebook 07 measures why: with the stand-in discriminator, lab-clip's
16-patch image tower, the full objective collapses the student to a few colours, and two collapsed models would
compare nothing). Each :class:`Arm` holds the paper's FID for its row beside its configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ldm_lab.distill.config import DistillConfig
from ldm_lab.names import unknown_name_error


@dataclass(frozen=True)
class Arm:
    """One row of the ablation: what it changes, the Tab. 1 row it reproduces, and its configuration."""

    name: str            # the --arm name
    row: str             # Tab. 1 row: "b" discriminator, "c" initialisation, "d" loss terms, "f" teacher steps;
                         # "baseline": LCM
    label: str           # what a table shows for it
    config: DistillConfig
    paper_fid: float | None = None   # the FID the paper's Tab. 1 reports for this row; None: none comparable


BASE = DistillConfig()
DISTILLATION_ONLY = replace(BASE, add=replace(BASE.add, adversarial_weight=0.0))

ARMS = {arm.name: arm for arm in (
    Arm("add", "d", "adversarial + distillation (the paper's objective)", BASE, 20.6),
    Arm("adversarial-only", "d", "adversarial only", replace(BASE, add=replace(BASE.add, distillation_weight=0.0)),
        20.8),
    Arm("distillation-only", "d", "distillation only", DISTILLATION_ONLY, 315.6),
    Arm("random-init", "c", "random initialisation (distillation only)",
        replace(DISTILLATION_ONLY, add=replace(DISTILLATION_ONLY.add, pretrained_student=False)), 293.6),
    Arm("teacher-4-steps", "f", "teacher 4 DDIM steps to its target (distillation only)",
        replace(DISTILLATION_ONLY, add=replace(DISTILLATION_ONLY.add, teacher_steps=4))),
    Arm("add-plain-heads", "b", "adversarial + distillation, heads at 10x the rate on unaugmented images",
        replace(BASE, discriminator=replace(BASE.discriminator, augment=False), discriminator_lr=1e-3)),
    Arm("lcm", "baseline", "latent consistency distillation (LCM)", replace(BASE, method="lcm")),
)}
# The reference each row is compared with: the paper's objective for rows b and d; the pretrained, 1-teacher-step,
# distillation-only arm for rows c and f, and for the LCM baseline (trained for the same CPU minutes as that arm).
REFERENCE = {"b": "add", "c": "distillation-only", "d": "add", "f": "distillation-only",
             "baseline": "distillation-only"}


def arm_config(name: str) -> DistillConfig:
    """The configuration of the ablation arm ``name`` (one of :data:`ARMS`)."""
    if name not in ARMS:
        raise unknown_name_error("ADD ablation arm", name, ARMS)
    return ARMS[name].config


def arm_of(config: DistillConfig) -> str | None:
    """The arm whose method, objective and discriminator ``config`` has (None: not one of the ablation's)."""
    return next((arm.name for arm in ARMS.values() if arm.config.objective_key() == config.objective_key()), None)


__all__ = ["ARMS", "Arm", "DISTILLATION_ONLY", "REFERENCE", "arm_config", "arm_of"]
