"""Adversarial Diffusion Distillation (Sauer et al. 2023, SDXL-Turbo) at lab scale.

A student initialised from a trained teacher learns to draw in 1-4 steps from two signals (§3.2): an adversarial
loss from a discriminator made of a frozen pretrained feature network with trainable projection heads (hinge loss,
R1 on the heads' inputs), and a distillation loss pulling its x0 towards the teacher's guided denoising of it,
weighted by c(t) = ab_t, in pixel space. Pieces:

* :mod:`~ldm_lab.distill.timesteps`: the student's timesteps (999, 749, 499, 249) and its few-step sampler;
* :mod:`~ldm_lab.distill.student`: the student (zero terminal SNR) and its x0;
* :mod:`~ldm_lab.distill.discriminator`: lab-clip's frozen image tower (the DINOv2 stand-in) and the heads;
* :mod:`~ldm_lab.distill.losses`: the three loss terms;
* :mod:`~ldm_lab.distill.add`: one iteration's two updates; :mod:`~ldm_lab.distill.loop`: the training loop;
* :mod:`~ldm_lab.distill.run`: ``distill`` (``ldm-lab distill``) and ``load_student``;
* :mod:`~ldm_lab.distill.timing`: where a step's time goes (``step_time_breakdown``);
* :mod:`~ldm_lab.distill.lcm`: latent consistency distillation, the baseline the paper compares with;
* :mod:`~ldm_lab.distill.arms`: Tab. 1's ablation arms, each a ``DistillConfig`` (``ldm-lab distill --arm``).

Tab. 1's ablations are fields of :class:`ADDConfig`: ``pretrained_student`` (c), ``adversarial_weight`` /
``distillation_weight`` (d), ``teacher_steps`` (f); the discriminator's conditioning (b) is
:class:`DiscriminatorConfig`'s ``text_condition`` / ``image_condition``.
"""

from ldm_lab.distill.add import ADDConfig, ADDModels, PhaseTimer
from ldm_lab.distill.arms import ARMS, Arm, arm_config
from ldm_lab.distill.config import DISTILL_STEPS, STUDENT_TRAIN, DistillConfig
from ldm_lab.distill.discriminator import DiscriminatorConfig, DiscriminatorHeads, FeatureNetwork, ProjectionHead
from ldm_lab.distill.lcm import LCMConfig, LCMModels, lcm_sampling, lcm_timesteps
from ldm_lab.distill.loop import Distiller, DistillResult
from ldm_lab.distill.run import build_models, distill, load_student, load_teacher, run_config, student_config
from ldm_lab.distill.student import build_student, student_x0
from ldm_lab.distill.timesteps import student_sampling, student_timesteps

__all__ = [
    "ADDConfig", "ADDModels", "ARMS", "Arm", "DISTILL_STEPS", "DiscriminatorConfig", "DiscriminatorHeads",
    "DistillConfig", "DistillResult", "Distiller", "FeatureNetwork", "LCMConfig", "LCMModels", "PhaseTimer",
    "ProjectionHead", "STUDENT_TRAIN", "arm_config", "build_models", "build_student", "distill", "lcm_sampling",
    "lcm_timesteps", "load_student", "load_teacher", "run_config", "student_config", "student_sampling",
    "student_timesteps", "student_x0",
]
