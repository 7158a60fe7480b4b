"""ADD's objective (§3.2): L = L_adv^G + lambda * L_distill for the student, L_adv^D (with R1) for the heads.

* adversarial, generator side (§3.2, L_adv^G): -E[sum_k D_k(F_k(x_hat_theta))]. The heads' weights are detached,
  but not the graph: the gradient flows through the heads and the frozen feature network into the student's images.
  (Computing it under ``no_grad``, as some public re-implementations do, leaves the student no adversarial signal.)
* adversarial, discriminator side (§3.2, L_adv^D): hinge, E[sum_k max(0, 1 - D_k(F_k(x0)))] +
  E[sum_k max(0, 1 + D_k(F_k(x_hat_theta)))] + gamma R1, with R1 taken "on the input of each discriminator head"
  (the real images' features, not their pixels), so it reaches the heads only.
* distillation (§3.2, L_distill): the student's x0 re-noised to a teacher timestep t,
  x_hat_theta,t = a_t x_hat_theta + s_t eps', denoised by the teacher with classifier-free guidance (stop-gradient),
  and the student pulled to it with c(t) d(x_hat_theta, x_hat_psi), c(t) = ab_t, d the squared distance between the
  *decoded* images (pixel space).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ldm_lab.diffusion.guidance import guided_model
from ldm_lab.diffusion.losses import per_sample_mse
from ldm_lab.diffusion.noise import standard_normal
from ldm_lab.diffusion.parameterisation import add_noise, append_dims, prediction_to_eps, prediction_to_x0
from ldm_lab.models import LatentDiffusion
from ldm_lab.tasks.gan import frozen_call

R1_GAMMA = 1e-5               # ADD's R1 weight gamma
DISTILLATION_WEIGHT = 2.5     # ADD's lambda


def generator_adversarial_loss(heads: nn.Module, fake_features: list[Tensor], condition: Tensor | None) -> Tensor:
    """-sum_k mean D_k(F_k(x_hat_theta)) (L_adv^G), with the heads' weights detached: the gradient reaches the fake
    images' features (and through F the student), never the heads."""
    return -sum(logits.mean() for logits in frozen_call(heads, fake_features, condition))


def hinge_discriminator_loss(real_logits: list[Tensor], fake_logits: list[Tensor]) -> Tensor:
    """sum_k E[relu(1 - D_k(real))] + E[relu(1 + D_k(fake))] (L_adv^D without R1; Lim & Ye 2017)."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits))


def r1_penalty(real_logits: list[Tensor], real_features: list[Tensor]) -> Tensor:
    """R1 (Mescheder et al. 2018, eq. 9) on each head's input: E[sum_k ||grad_{F_k} D_k(F_k(x0))||^2] / 2, the
    features being the real images' (``requires_grad`` leaves). ``create_graph``: the penalty trains the heads."""
    gradients = torch.autograd.grad(sum(logits.sum() for logits in real_logits), real_features, create_graph=True)
    return 0.5 * sum(g.pow(2).flatten(1).sum(dim=1).mean() for g in gradients)


def distillation_weight(teacher: LatentDiffusion, t: Tensor) -> Tensor:
    """c(t) = ab_t on the teacher's schedule (ADD §3.2: "exponential" weighting, favouring low noise), ``(b,)``."""
    return teacher.schedule.alpha_bar_at(t)


@torch.no_grad()
def teacher_x0(teacher: LatentDiffusion, student_x0: Tensor, t: Tensor, cond: dict[str, Tensor],
               uncond: dict[str, Tensor] | None, guidance_scale: float, generator: torch.Generator | None = None,
               steps: int = 1) -> Tensor:
    """x_hat_psi(sg(x_hat_theta,t), t): re-noise the student's x0 to ``t`` on the teacher's schedule and read the
    teacher's guided x0 estimate (Ho & Salimans 2022, CFG on its eps / v output). ``steps > 1`` (ADD Tab. 1f,
    teacher steps): the teacher walks from t to 0 in that many deterministic DDIM steps (Song et al. 2021, eta = 0)
    at the timesteps round(t (k - j) / k), each sample from its own t, and its last x0 is the target."""
    if steps < 1:
        raise ValueError(f"teacher steps must be >= 1 (1: the paper's single teacher evaluation), not {steps}")
    prediction = teacher.preset.prediction.value
    model = guided_model(teacher, cond=cond, uncond=uncond, scale=guidance_scale)
    timesteps = [(t.double() * left / steps).round().long() for left in range(steps, 0, -1)]  # t, ..., ~t / k
    alpha_bars = [append_dims(teacher.schedule.alpha_bar_at(s), student_x0.ndim).to(student_x0.dtype)
                  for s in timesteps]
    x = add_noise(student_x0.detach(), standard_normal(student_x0, generator), alpha_bars[0])
    for i, (s, alpha_bar) in enumerate(zip(timesteps, alpha_bars)):
        output = model(x, s)
        x0 = prediction_to_x0(output, prediction, x, alpha_bar)
        if i + 1 < steps:   # DDIM: the same clean estimate and noise direction at the next, lower level
            x = add_noise(x0, prediction_to_eps(output, prediction, x, alpha_bar), alpha_bars[i + 1])
    return x0


def distillation_loss(decode: Callable[[Tensor], Tensor], student_images: Tensor, target_x0: Tensor,
                      weight: Tensor) -> Tensor:
    """E[c(t) ||D(x_hat_theta) - D(x_hat_psi)||^2] (L_distill), the squared distance per pixel in image space
    (ADD §3.2: decoding both gave more stable gradients than latents); ``student_images`` are D(x_hat_theta),
    decoded with the gradient; the target is decoded without."""
    with torch.no_grad():
        target_images = decode(target_x0)
    return (weight.to(student_images.dtype) * per_sample_mse(student_images, target_images)).mean()
