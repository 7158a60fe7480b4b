"""Latent Consistency Distillation (Luo et al. 2023, Alg. 1): the few-step baseline ADD compares with (ADD §4).

The student f_theta is the teacher's network read as a consistency function (eq. 2 of Song et al. 2023),

    f_theta(z_t, t) = c_skip(t) z_t + c_out(t) x0_theta(z_t, t),

and learns that f is constant along the teacher's guided probability-flow ODE: for neighbours t_{n+k} > t_n on the
teacher's DDIM grid (50 of 1000 timesteps, skipping k = 20, LCM §4.2), one guided DDIM step of the teacher takes
z_{t_{n+k}} to z_hat_{t_n}, and the student at t_{n+k} is pulled to the target network (an EMA of the student,
theta^-) at t_n:

    L = || f_theta(z_{t_{n+k}}, t_{n+k}) - f_theta^-(z_hat_{t_n}, t_n) ||^2      (latent space, LCM eq. 9 with d = L2)

Sampling is multistep consistency sampling (``consistency``: predict x0, re-noise with fresh noise) at LCM's
timesteps (999, 759, 519, 279 for 4 steps). Lab simplifications, said here: the guidance scale is fixed (LCM draws
w from a range and embeds it in the U-Net; lab-emoji is scored at 3), and the student keeps the teacher's schedule
(no zero terminal SNR; LCM starts from t = 999, whose ab is small but not 0).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ldm_lab.device import model_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.diffusion.guidance import guided_model
from ldm_lab.diffusion.losses import per_sample_mse
from ldm_lab.diffusion.noise import standard_normal
from ldm_lab.diffusion.parameterisation import add_noise, append_dims, prediction_to_eps, prediction_to_x0
from ldm_lab.distill.add import PhaseTimer, StudentLosses, untimed
from ldm_lab.models import LatentDiffusion

SIGMA_DATA = 0.5          # sigma_data of the boundary condition (Song et al. 2023, §3; LCM's release)
TIMESTEP_SCALING = 10.0   # LCM's release scales t by 10 in c_skip / c_out, so that f is ~x0 for every t >= 20


@dataclass(frozen=True)
class LCMConfig:
    """Latent consistency distillation's objective and its student (LCM §4; defaults are the paper's except the
    guidance scale, lab-emoji's own)."""

    ddim_steps: int = 50                # N, the teacher's DDIM grid over 1000 timesteps (skipping step k = 1000 / N)
    teacher_guidance_scale: float = 3.0  # the fixed CFG scale of the teacher's ODE step
    target_ema_decay: float = 0.95      # mu, the target network's EMA rate (LCM Alg. 1)
    student_steps: int = 4              # the sampling steps of the run's sample grids (LCM is sampled at 1-8)
    zero_terminal_snr: bool = False     # LCM keeps the teacher's schedule
    pretrained_student: bool = True     # LCM initialises the student (and its target) from the teacher

    def __post_init__(self) -> None:
        if isinstance(self.ddim_steps, bool) or not isinstance(self.ddim_steps, int) or not 2 <= self.ddim_steps <= 1000:
            raise ValueError(f"LCMConfig.ddim_steps is the teacher's DDIM grid size, a whole number in 2..1000 (LCM: "
                             f"50); got {self.ddim_steps!r}")
        if not 0 <= self.target_ema_decay < 1:
            raise ValueError(f"LCMConfig.target_ema_decay must be in [0, 1) (LCM: 0.95), not {self.target_ema_decay}")
        if not math.isfinite(self.teacher_guidance_scale):
            raise ValueError(f"teacher_guidance_scale must be finite, not {self.teacher_guidance_scale}")

    def sampling(self, steps: int = 1, seed: int | None = None, num_train_timesteps: int = 1000) -> SamplingSettings:
        """How the student draws: :func:`lcm_sampling` on this run's DDIM grid."""
        return lcm_sampling(steps, seed, num_train_timesteps, self.ddim_steps)


def ddim_grid(ddim_steps: int, num_train_timesteps: int = 1000) -> tuple[int, ...]:
    """The teacher's DDIM timesteps, ascending: k - 1, 2k - 1, ..., T - 1 with k = T / N (19, 39, ..., 999)."""
    k = num_train_timesteps // ddim_steps
    return tuple(k * (i + 1) - 1 for i in range(ddim_steps))


def lcm_timesteps(steps: int, num_train_timesteps: int = 1000, ddim_steps: int = 50) -> tuple[int, ...]:
    """LCM's sampling timesteps (its scheduler): every (N // steps)-th of the DDIM grid from the top,
    4 -> (999, 759, 519, 279), 2 -> (999, 499), 1 -> (999,)."""
    grid = ddim_grid(ddim_steps, num_train_timesteps)[::-1]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= len(grid):
        raise ValueError(f"LCM samples in 1..{len(grid)} steps (the teacher's DDIM grid), not {steps!r}")
    return grid[::len(grid) // steps][:steps]


def lcm_sampling(steps: int = 1, seed: int | None = None, num_train_timesteps: int = 1000,
                 ddim_steps: int = 50) -> SamplingSettings:
    """Multistep consistency sampling at LCM's timesteps, no guidance (it is distilled into the student)."""
    return SamplingSettings(sampler="consistency", steps=steps, guidance_scale=1.0, seed=seed,
                            timesteps=lcm_timesteps(steps, num_train_timesteps, ddim_steps))


def boundary_coefficients(t: Tensor) -> tuple[Tensor, Tensor]:
    """(c_skip, c_out) at timesteps ``t`` (Song et al. 2023, eq. 7, with t scaled as LCM's release): f = z at t = 0."""
    scaled = t.double() * TIMESTEP_SCALING
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2).sqrt()
    return c_skip.float(), c_out.float()


def consistency_function(model: LatentDiffusion, z: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
    """f(z_t, t) = c_skip(t) z_t + c_out(t) x0(z_t, t), x0 read from the model's eps / v / x0 output."""
    alpha_bar = append_dims(model.schedule.alpha_bar_at(t), z.ndim).to(z.dtype)
    x0 = prediction_to_x0(model(z, t, **cond), model.preset.prediction.value, z, alpha_bar)
    c_skip, c_out = (append_dims(c, z.ndim).to(z) for c in boundary_coefficients(t))
    return c_skip * z + c_out * x0


@torch.no_grad()
def teacher_ddim_step(teacher: LatentDiffusion, z: Tensor, t: Tensor, t_prev: Tensor, cond: dict[str, Tensor],
                      uncond: dict[str, Tensor] | None, guidance_scale: float) -> Tensor:
    """z_hat_{t_n}: one deterministic DDIM step (Song et al. 2021, eq. 12, eta = 0) of the guided teacher from t to
    t_prev, the ODE solver Psi of LCM eq. 8."""
    prediction = teacher.preset.prediction.value
    output = guided_model(teacher, cond=cond, uncond=uncond, scale=guidance_scale)(z, t)
    alpha_bar = append_dims(teacher.schedule.alpha_bar_at(t), z.ndim).to(z.dtype)
    x0, eps = prediction_to_x0(output, prediction, z, alpha_bar), prediction_to_eps(output, prediction, z, alpha_bar)
    return add_noise(x0, eps, append_dims(teacher.schedule.alpha_bar_at(t_prev), z.ndim).to(z.dtype))


@dataclass
class LCMPrepared:
    """A data batch made ready for the student's update (nothing here carries a gradient)."""

    z: Tensor                            # z0 noised to t_{n+k} (b, c, h, w)
    t: Tensor                            # t_{n+k} (b,)
    t_prev: Tensor                       # t_n = t_{n+k} - k, at least 0 (b,)
    cond: dict[str, Tensor]
    uncond: dict[str, Tensor] | None


class LCMModels(nn.Module):
    """Teacher, student and the student's target network (theta^-, an EMA of its U-Net). :attr:`trainable`
    holds student and target, so that a checkpoint resumes both."""

    def __init__(self, teacher: LatentDiffusion, student: LatentDiffusion, config: LCMConfig,
                 timer: PhaseTimer | None = None) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.target = copy.deepcopy(student).requires_grad_(False).eval()
        self.trainable = nn.ModuleDict({"student": student, "target": self.target.unet})
        self.config, self.timer = config, timer
        self.grid = torch.tensor(ddim_grid(config.ddim_steps, teacher.schedule.num_train_timesteps))

    @property
    def student(self) -> LatentDiffusion:
        return self.trainable["student"]

    def phase(self, name: str):
        return (self.timer or untimed)(name, model_device(self.teacher))

    @torch.no_grad()
    def prepare(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> LCMPrepared:
        """Encode x0, draw t_{n+k} from the DDIM grid and noise z0 to it; embed the captions."""
        with self.phase("prepare (encode, text)"):
            z0 = self.student.encode(batch["image"].to(model_device(self.teacher)))
            pick = torch.randint(len(self.grid), (len(z0),), generator=generator,
                                 device=generator.device if generator is not None else "cpu")
            t = self.grid[pick.cpu()].to(z0.device)
            t_prev = (t - (self.grid[0] + 1)).clamp(min=0)
            alpha_bar = append_dims(self.student.schedule.alpha_bar_at(t), z0.ndim).to(z0.dtype)
            conditions = {"caption": list(batch["caption"])}
            cond = self.student.condition(conditions, len(z0))
            guided = self.config.teacher_guidance_scale != 1.0
            uncond = self.teacher.unconditional(conditions, len(z0)) if guided else None
        return LCMPrepared(add_noise(z0, standard_normal(z0, generator), alpha_bar), t, t_prev, cond, uncond)

    def student_losses(self, prepared: LCMPrepared, generator: torch.Generator | None = None) -> StudentLosses:
        """The consistency distillation loss of a prepared batch (reported as "distillation"; ``images`` holds the
        student's f(z, t), latents: LCM decodes nothing and has no discriminator to show images to)."""
        p = prepared
        with self.phase("student forward"):
            online = consistency_function(self.student, p.z, p.t, p.cond)
        with self.phase("teacher (CFG) DDIM step + target network"), torch.no_grad():
            z_prev = teacher_ddim_step(self.teacher, p.z, p.t, p.t_prev, p.cond, p.uncond,
                                       self.config.teacher_guidance_scale)
            target = consistency_function(self.target, z_prev, p.t_prev, p.cond)
        loss = per_sample_mse(online, target).mean()
        return StudentLosses(loss, loss.new_zeros(()), loss.detach(), online, p.t, {"distillation": loss})

    @torch.no_grad()
    def update_target(self) -> None:
        """theta^- <- mu theta^- + (1 - mu) theta (LCM Alg. 1), after each student update."""
        mu = self.config.target_ema_decay
        for target, online in zip(self.target.unet.parameters(), self.student.unet.parameters()):
            target.lerp_(online, 1 - mu)

    def train(self, mode: bool = True) -> LCMModels:
        """Train mode for the student; teacher and target network stay in eval mode."""
        super().train(mode)
        self.teacher.eval()
        self.target.eval()
        return self


__all__ = ["LCMConfig", "LCMModels", "LCMPrepared", "boundary_coefficients", "consistency_function", "ddim_grid",
           "lcm_sampling", "lcm_timesteps", "teacher_ddim_step"]
