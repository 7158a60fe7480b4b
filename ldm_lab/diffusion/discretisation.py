"""Which noise levels a sampler visits: timestep spacing (Lin et al. 2023, Table 2) and Karras sigmas.

A discretisation returns the sampler's noise levels as a decreasing float64 tensor ``sigmas`` [steps + 1]
that ends in 0 (the clean sample), or in sigma_0, the first training level, where the official DDIM stops
(:class:`FinalSigma`).
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ldm_lab.diffusion.schedules import NoiseSchedule
from ldm_lab.names import unknown_name_error

TimestepSpacing = Literal["linspace", "leading", "trailing"]
TIMESTEP_SPACINGS: tuple[str, ...] = ("linspace", "leading", "trailing")


def spaced_timesteps(num_train_timesteps: int, steps: int, spacing: TimestepSpacing | str = "trailing",
                     steps_offset: int = 0) -> Tensor:
    """``steps`` integer timesteps, descending, as diffusers spaces them (Lin et al. 2023, Table 2):

    * ``linspace``: round(linspace(0, T-1, steps)) — starts at T-1 and ends at 0;
    * ``leading``:  k * (T // steps) + steps_offset — SD 1.x/2.x use steps_offset = 1; never reaches T-1;
    * ``trailing``: round(T - k * T / steps) - 1 — starts at T-1 and skips the cleanest timesteps.
    """
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be between 1 and the {num_train_timesteps} training timesteps, got {steps}")
    if spacing == "linspace":
        timesteps = np.linspace(0, num_train_timesteps - 1, steps).round()[::-1]
    elif spacing == "leading":
        timesteps = np.arange(steps)[::-1] * (num_train_timesteps // steps) + steps_offset
    elif spacing == "trailing":
        timesteps = np.round(np.arange(num_train_timesteps, 0, -num_train_timesteps / steps))[:steps] - 1
    else:
        raise unknown_name_error("timestep spacing", spacing, TIMESTEP_SPACINGS)
    return torch.from_numpy(timesteps.astype(np.int64).copy())


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, eq. 5:
    sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i = 0 … N-1."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


class FinalSigma(str, Enum):
    """Where the last step lands (diffusers' ``final_sigmas_type``). A plain string works too."""

    ZERO = "zero"            # sigma = 0 (ab = 1), the clean sample: k-diffusion, SGM,
                             # DDIMScheduler(set_alpha_to_one=True)
    SIGMA_MIN = "sigma_min"  # sigma_0, the level of the first training timestep (ab_0): LDM's DDIMSampler (its last
                             # "previous" alpha is alphas_cumprod[0]) and SD's DDIMScheduler(set_alpha_to_one=False)


FINAL_SIGMAS: tuple[str, ...] = tuple(f.value for f in FinalSigma)


def append_zero(sigmas: Tensor) -> Tensor:
    """The last step lands on sigma = 0, the clean sample."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def append_final_sigma(sigmas: Tensor, schedule: NoiseSchedule, final: FinalSigma | str) -> Tensor:
    """[n] visited levels -> [n + 1] with the last step's target: 0, or sigma_0. When the levels already end at
    sigma_0 (linspace spacing visits t = 0) the official DDIM's last step goes from ab_0 to ab_0, which changes
    nothing; it is left out."""
    if final not in FINAL_SIGMAS:
        raise unknown_name_error("final sigma", final, FINAL_SIGMAS,
                                 advice="'sigma_min' is diffusers' set_alpha_to_one=False.")
    if FinalSigma(final) is FinalSigma.ZERO:
        return append_zero(sigmas)
    sigma_min = sigmas.new_tensor([schedule.sigma_min])
    return sigmas if torch.isclose(sigmas[-1], sigma_min[0]) else torch.cat([sigmas, sigma_min])


def spaced_sigmas(schedule: NoiseSchedule, steps: int, spacing: TimestepSpacing | str = "trailing",
                  steps_offset: int = 0, final: FinalSigma | str = FinalSigma.ZERO) -> Tensor:
    """[steps + 1] the schedule's sigmas at the spaced timesteps, then 0 (or sigma_0, see :class:`FinalSigma`)."""
    timesteps = spaced_timesteps(schedule.num_train_timesteps, steps, spacing, steps_offset)
    return append_final_sigma(schedule.sigma_at(timesteps), schedule, final)


def karras_schedule_sigmas(schedule: NoiseSchedule, steps: int, rho: float = 7.0,
                           final: FinalSigma | str = FinalSigma.ZERO) -> Tensor:
    """[steps + 1] Karras sigmas spanning the schedule's whole range [sigma_0, sigma_{T-1}], then 0."""
    return append_final_sigma(karras_sigmas(schedule.sigma_min, schedule.sigma_max, steps, rho), schedule, final)
