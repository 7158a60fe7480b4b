"""One ADD iteration (§3.1, Fig. 2), split into its two alternating updates:

    models = ADDModels(teacher, student, features, heads, ADDConfig())
    prepared = models.prepare(batch)                       # z0, s, x_s, conditions (all without gradient)
    losses = models.student_losses(prepared)               # L_adv^G + lambda L_distill, and D(x_hat_theta)
    d_losses = models.discriminator_losses(prepared, losses.images.detach())   # hinge + gamma R1

The trainable weights are the student's U-Net and the discriminator heads (:attr:`ADDModels.trainable`, what a
checkpoint stores); the teacher, the feature network, the first stage and the text tower are frozen.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ldm_lab.device import model_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.distill.augment import diff_augment
from ldm_lab.distill.discriminator import DiscriminatorHeads, FeatureNetwork, discriminator_condition
from ldm_lab.distill.losses import (DISTILLATION_WEIGHT, R1_GAMMA, distillation_loss, distillation_weight,
                                    generator_adversarial_loss, hinge_discriminator_loss, r1_penalty, teacher_x0)
from ldm_lab.distill.student import noised_latents, student_x0
from ldm_lab.distill.timesteps import STUDENT_TRAIN_STEPS, student_sampling, student_timesteps
from ldm_lab.models import LatentDiffusion


@dataclass(frozen=True)
class ADDConfig:
    """ADD's objective and its student (§3, §4). Defaults are the paper's, except the teacher's guidance scale,
    which is lab-emoji's own (3.0, the scale its samples and scores use)."""

    student_steps: int = STUDENT_TRAIN_STEPS  # N, the student's training timesteps, trailing: 4 -> 999/749/499/249
    zero_terminal_snr: bool = True            # the student's schedule rescaled so tau_N = T - 1 is pure noise
    pretrained_student: bool = True           # start the student's U-Net from the teacher's (Tab. 1c: random
                                              # initialisation, False, gave FID 293.6 against 20.6)
    adversarial_weight: float = 1.0           # weight of L_adv^G; 0: distillation alone (Tab. 1d: FID 315.6)
    distillation_weight: float = DISTILLATION_WEIGHT  # lambda; 0: adversarial alone (Tab. 1d: FID 20.8)
    teacher_guidance_scale: float = 3.0       # CFG scale w of the teacher's distillation target
    teacher_steps: int = 1                    # DDIM steps of the teacher from t to its target (Tab. 1f); 1: one
                                              # evaluation, the paper's default
    r1_gamma: float = R1_GAMMA                # gamma of the R1 penalty on the heads' real inputs

    def __post_init__(self) -> None:
        n = self.student_steps
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
            raise ValueError(f"ADDConfig.student_steps is N, the number of timesteps the student trains at (the "
                             f"paper: 4, i.e. 999/749/499/249), a whole number in 1..1000; got {n!r}")
        for name in ("adversarial_weight", "distillation_weight", "r1_gamma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"ADDConfig.{name} must be a finite number >= 0, not {value}")
        if self.adversarial_weight == 0 and self.distillation_weight == 0:
            raise ValueError("adversarial_weight and distillation_weight are both 0: the student would learn "
                             "nothing. Keep at least one (the paper: 1 and 2.5).")
        if isinstance(self.teacher_steps, bool) or not isinstance(self.teacher_steps, int) or self.teacher_steps < 1:
            raise ValueError(f"ADDConfig.teacher_steps is how many DDIM steps the teacher takes to its target, a "
                             f"whole number >= 1 (1 in the paper); got {self.teacher_steps!r}")
        if not math.isfinite(self.teacher_guidance_scale):
            raise ValueError(f"teacher_guidance_scale must be finite, not {self.teacher_guidance_scale}")

    def sampling(self, steps: int = 1, seed: int | None = None, num_train_timesteps: int = 1000) -> SamplingSettings:
        """How the student draws: :func:`~ldm_lab.distill.timesteps.student_sampling` at its trained timesteps."""
        return student_sampling(steps, seed, num_train_timesteps, self.student_steps)


class PhaseTimer:
    """Seconds per named phase of a step, summed over calls: wall time (CUDA work synchronised at each edge) and
    this process's CPU time, which on a shared CPU is what the phase would take with a core to itself."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)      # wall
        self.cpu_seconds: dict[str, float] = defaultdict(float)  # process CPU time (all its threads)

    @contextmanager
    def __call__(self, name: str, device: torch.device) -> Iterator[None]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        yield
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.seconds[name] += time.perf_counter() - start
        self.cpu_seconds[name] += time.process_time() - cpu_start

    def clear(self) -> None:
        self.seconds.clear()
        self.cpu_seconds.clear()


@contextmanager
def untimed(name: str, device: torch.device) -> Iterator[None]:
    """The phase context of a run without a :class:`PhaseTimer`: times nothing."""
    yield


@dataclass
class Prepared:
    """A data batch made ready for both updates (nothing here carries a gradient)."""

    images: Tensor                          # x0, the real images (b, 3, H, W) in [-1, 1]
    x_s: Tensor                             # the student's input: z0 noised to s on its schedule (b, c, h, w)
    s: Tensor                               # student timesteps (b,), drawn uniformly from tau_1..tau_N
    cond: dict[str, Tensor]                 # U-Net conditioning of the captions (shared frozen text tower)
    uncond: dict[str, Tensor] | None        # the teacher's CFG null conditioning (None: no guidance)
    disc_condition: Tensor | None           # [c_text, c_img] for the heads' projections


@dataclass
class StudentLosses:
    """The student's objective of one batch and its parts."""

    total: Tensor                           # adversarial_weight * L_adv^G + lambda * L_distill
    adversarial: Tensor                     # L_adv^G
    distillation: Tensor                    # L_distill
    images: Tensor                          # D(x_hat_theta): the student's decoded images, with their graph
    t: Tensor                               # the teacher timesteps of the distillation target (b,)
    weighted: dict[str, Tensor]             # the terms of ``total`` as weighted there, with their graph:
                                            # "adversarial", "distillation"


class ADDModels(nn.Module):
    """The four networks of ADD and its two losses. Only :attr:`trainable` (student + heads) trains."""

    def __init__(self, teacher: LatentDiffusion, student: LatentDiffusion, features: FeatureNetwork,
                 heads: DiscriminatorHeads, config: ADDConfig, timer: PhaseTimer | None = None) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.features = features
        self.trainable = nn.ModuleDict({"student": student, "heads": heads})
        self.config, self.timer = config, timer
        self.student_timesteps = torch.tensor(student_timesteps(config.student_steps,
                                                                student.schedule.num_train_timesteps,
                                                                config.student_steps))

    @property
    def student(self) -> LatentDiffusion:
        return self.trainable["student"]

    @property
    def heads(self) -> DiscriminatorHeads:
        return self.trainable["heads"]

    def phase(self, name: str):
        """A context that adds its wall and CPU time to the timer under ``name`` (nothing without a timer)."""
        return (self.timer or untimed)(name, model_device(self.teacher))

    def judged(self, images: Tensor) -> list[Tensor]:
        """F_k of images as the heads judge them: each image DiffAugment-ed first when the discriminator's config
        asks (StyleGAN-T's discriminator; ``ldm_lab.distill.augment``), real and generated alike."""
        return self.features(diff_augment(images) if self.heads.config.augment else images)

    @torch.no_grad()
    def prepare(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> Prepared:
        """Encode x0, draw s from the student's timesteps and noise z0 to x_s; embed the captions."""
        with self.phase("prepare (encode, text)"):
            images = batch["image"].to(model_device(self.teacher))
            z0 = self.student.encode(images)
            pick = torch.randint(len(self.student_timesteps), (len(z0),), generator=generator,
                                 device=generator.device if generator is not None else "cpu")
            s = self.student_timesteps[pick.cpu()].to(z0.device)
            conditions = {"caption": list(batch["caption"])}
            cond = self.student.condition(conditions, len(z0))
            guided = self.config.teacher_guidance_scale != 1.0
            uncond = self.teacher.unconditional(conditions, len(z0)) if guided else None
            disc_condition = discriminator_condition(self.features, self.heads.config, batch["caption"], images)
        return Prepared(images, noised_latents(self.student, z0, s, generator), s, cond, uncond, disc_condition)

    def student_losses(self, prepared: Prepared, generator: torch.Generator | None = None) -> StudentLosses:
        """L_adv^G + lambda L_distill (ADD §3.2, the overall objective) of a prepared batch;
        ``total.backward()`` trains the student."""
        c = self.config
        with self.phase("student forward"):
            x0_student = student_x0(self.student, prepared.x_s, prepared.s, prepared.cond)
        with self.phase("decode student (forward)"):
            images = self.student.decode(x0_student)               # (b, 3, H, W), with the graph
        adversarial = images.new_zeros(())
        if c.adversarial_weight > 0:
            with self.phase("discriminator on fakes (forward)"):
                adversarial = generator_adversarial_loss(self.heads, self.judged(images), prepared.disc_condition)
        t = torch.randint(self.teacher.schedule.num_train_timesteps, (len(images),), generator=generator,
                          device=generator.device if generator is not None else "cpu").to(images.device)
        distillation = images.new_zeros(())
        if c.distillation_weight > 0:
            with self.phase("teacher (CFG) + decode target"):
                target = teacher_x0(self.teacher, x0_student, t, prepared.cond, prepared.uncond,
                                    c.teacher_guidance_scale, generator, c.teacher_steps)
                distillation = distillation_loss(self.teacher.decode, images, target,
                                                 distillation_weight(self.teacher, t))
        weighted = {"adversarial": c.adversarial_weight * adversarial,
                    "distillation": c.distillation_weight * distillation}
        return StudentLosses(sum(weighted.values()), adversarial.detach(), distillation.detach(), images, t, weighted)

    def discriminator_losses(self, prepared: Prepared, fake_images: Tensor) -> tuple[Tensor, Tensor]:
        """(hinge + gamma R1, R1) for the heads (L_adv^D), on the real images and the student's (detached) images,
        R1 on the heads' real inputs."""
        with self.phase("discriminator step: features (no grad)"), torch.no_grad():
            real_features = self.judged(prepared.images)
            fake_features = self.judged(fake_images.detach())
        with self.phase("discriminator step: heads (forward)"):
            real_features = [f.requires_grad_(True) for f in real_features]
            real_logits = self.heads(real_features, prepared.disc_condition)
            hinge = hinge_discriminator_loss(real_logits, self.heads(fake_features, prepared.disc_condition))
        gamma = self.config.r1_gamma
        if gamma == 0:
            return hinge, hinge.new_zeros(())
        with self.phase("discriminator step: R1 gradient (forward of the penalty)"):
            r1 = r1_penalty(real_logits, real_features)
        return hinge + gamma * r1, r1.detach()

    def train(self, mode: bool = True) -> ADDModels:
        """Train mode for student and heads; teacher and feature network stay in eval mode."""
        super().train(mode)
        self.teacher.eval()
        self.features.eval()
        return self


__all__ = ["ADDConfig", "ADDModels", "PhaseTimer", "Prepared", "StudentLosses"]
