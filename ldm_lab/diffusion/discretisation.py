"""Which noise levels a sampler visits: timestep spacing (Lin et al. 2023, Table 2) and Karras sigmas.

A discretisation returns the sampler's noise levels as a decreasing float64 tensor ``sigmas`` [steps + 1]
that ends in 0 (the clean sample).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ldm_lab.diffusion.schedules import NoiseSchedule

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
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(TIMESTEP_SPACINGS)}")
    return torch.from_numpy(timesteps.astype(np.int64).copy())


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, eq. 5:
    sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i = 0 … N-1."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def append_zero(sigmas: Tensor) -> Tensor:
    """The last step lands on sigma = 0, the clean sample."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def spaced_sigmas(schedule: NoiseSchedule, steps: int, spacing: TimestepSpacing | str = "trailing",
                  steps_offset: int = 0) -> Tensor:
    """[steps + 1] the schedule's sigmas at the spaced timesteps, then 0."""
    timesteps = spaced_timesteps(schedule.num_train_timesteps, steps, spacing, steps_offset)
    return append_zero(schedule.sigma_at(timesteps))


def karras_schedule_sigmas(schedule: NoiseSchedule, steps: int, rho: float = 7.0) -> Tensor:
    """[steps + 1] Karras sigmas spanning the schedule's whole range [sigma_0, sigma_{T-1}], then 0."""
    return append_zero(karras_sigmas(schedule.sigma_min, schedule.sigma_max, steps, rho))
