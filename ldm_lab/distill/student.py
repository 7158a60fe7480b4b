"""The ADD student (§3.1): initialised from the pretrained diffusion model, trained at a few fixed timesteps from
noised real data, and read as an x0 predictor.

The student is the teacher's own network (Tab. 1c: a pretrained initialisation is essential, FID 293.6 -> 20.6)
on the teacher's schedule rescaled to zero terminal SNR (Lin et al. 2023, Alg. 1; ``Preset.zero_terminal_snr``),
so its first timestep tau_N = T - 1 sees pure noise, as it will when sampling. Its U-Net keeps the teacher's
parameterisation (v for lab-emoji, which zero terminal SNR needs: at ab = 0, x0 = -v) and the student's x0 is
read from it; only the U-Net trains (first stage and text tower stay frozen, as the teacher's).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from ldm_lab.device import model_device
from ldm_lab.diffusion.noise import standard_normal
from ldm_lab.diffusion.parameterisation import add_noise, append_dims, prediction_to_x0
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig


def student_config(teacher: LatentDiffusion, zero_terminal_snr: bool = True) -> LatentDiffusionConfig:
    """The teacher's model configuration with its schedule rescaled to zero terminal SNR, and no condition
    dropout (the student is sampled without guidance, so it needs no unconditional model)."""
    preset = replace(teacher.preset, zero_terminal_snr=zero_terminal_snr)
    return replace(teacher.config, preset=preset, condition_dropout=0.0)


def build_student(teacher: LatentDiffusion, zero_terminal_snr: bool = True, pretrained: bool = True) -> LatentDiffusion:
    """A copy of the teacher's weights in the student's configuration; only its U-Net is trainable.
    ``pretrained=False`` (ADD Tab. 1c, "random" initialisation): the U-Net keeps its fresh random weights, while the
    first stage and the text tower are still the teacher's."""
    student = LatentDiffusion(student_config(teacher, zero_terminal_snr))
    weights = teacher.state_dict()
    if not pretrained:
        weights = {key: value for key, value in weights.items() if not key.startswith("unet.")}
    student.load_state_dict(weights, strict=pretrained)
    return freeze_all_but_unet(student).to(model_device(teacher))


def freeze_all_but_unet(student: LatentDiffusion) -> LatentDiffusion:
    """The student trains its U-Net only; first stage and conditioner are the teacher's, frozen."""
    student.requires_grad_(False)
    student.unet.requires_grad_(True)
    return student


def noised_latents(student: LatentDiffusion, z0: Tensor, timesteps: Tensor,
                   generator: torch.Generator | None = None) -> Tensor:
    """x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s) eps on the student's schedule (ADD §3.1): pure noise at s = T - 1."""
    alpha_bar = append_dims(student.schedule.alpha_bar_at(timesteps), z0.ndim).to(z0.dtype)
    return add_noise(z0, standard_normal(z0, generator), alpha_bar)


def student_x0(student: LatentDiffusion, x_s: Tensor, timesteps: Tensor, cond: dict[str, Tensor]) -> Tensor:
    """x_hat_theta(x_s, s): the student's clean-latent prediction, read from its eps / v / x0 output."""
    alpha_bar = append_dims(student.schedule.alpha_bar_at(timesteps), x_s.ndim).to(x_s.dtype)
    return prediction_to_x0(student(x_s, timesteps, **cond), student.preset.prediction.value, x_s, alpha_bar)
