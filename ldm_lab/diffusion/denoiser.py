"""The denoiser D(x; sigma) that sigma-space samplers call (Karras et al. 2022, §2 and Table 1).

Samplers work on the variance-exploding scaling x = x_t / sqrt(ab_t) = x0 + sigma * eps, with
sigma = sqrt((1 - ab) / ab). A discrete-time network F trained on x_t at integer timesteps becomes a denoiser
by preconditioning: D(x; sigma) = c_skip * x + c_out * F(c_in * x, c_noise), where c_in * x = x_t is exactly
what F saw in training and c_noise is the matching (fractional) timestep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ldm_lab.diffusion.parameterisation import Prediction, check_prediction
from ldm_lab.diffusion.schedules import NoiseSchedule

ModelFn = Callable[..., Tensor]   # model_fn(x_t [B, ...], timesteps [B], **cond) -> prediction [B, ...]
Scalings = tuple[float, float, float]


def eps_scalings(sigma: float) -> Scalings:
    """eps-prediction: x0 = x - sigma * eps. Returns (c_skip, c_out, c_in)."""
    c_in = (sigma**2 + 1) ** -0.5
    return 1.0, -sigma, c_in


def v_scalings(sigma: float) -> Scalings:
    """v-prediction: x0 = sqrt(ab) x_t - sqrt(1 - ab) v, with x_t = x / sqrt(sigma^2 + 1).
    Returns (c_skip, c_out, c_in)."""
    c_in = (sigma**2 + 1) ** -0.5
    return 1 / (sigma**2 + 1), -sigma * c_in, c_in


def x0_scalings(sigma: float) -> Scalings:
    """x0-prediction: the network output is the denoised sample. Returns (c_skip, c_out, c_in)."""
    return 0.0, 1.0, (sigma**2 + 1) ** -0.5


SCALINGS: dict[str, Callable[[float], Scalings]] = {"eps": eps_scalings, "v": v_scalings, "x0": x0_scalings}


@dataclass(frozen=True)
class Denoiser:
    """D(x; sigma) from a discrete-time model: precondition, call the model at the matching timestep, read x0."""

    model_fn: ModelFn              # the network (or a guided wrapper), called on x_t at fractional timesteps
    schedule: NoiseSchedule        # maps sigma to the timestep the model was trained with
    prediction: Prediction | str = "eps"  # what model_fn outputs
    clip_x0: float | None = None    # clamp the estimate to [-clip_x0, clip_x0]: pixel models in [-1, 1] (DDPM's
                                    # clip_denoised); leave None for latents, whose range is not fixed

    def __post_init__(self) -> None:
        check_prediction(self.prediction)

    def __call__(self, x: Tensor, sigma: float, **cond: Tensor) -> Tensor:
        c_skip, c_out, c_in = SCALINGS[self.prediction](sigma)
        c_noise = self.schedule.timestep_at(sigma).to(device=x.device, dtype=torch.float32)
        timesteps = c_noise.expand(x.shape[0])
        x0 = c_skip * x + c_out * self.model_fn(c_in * x, timesteps, **cond)
        return x0 if self.clip_x0 is None else x0.clamp(-self.clip_x0, self.clip_x0)
