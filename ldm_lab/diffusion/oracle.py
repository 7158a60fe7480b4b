"""A diffusion model that needs no training: the exact predictor for Gaussian data.

For x0 ~ N(m, s^2) (each element independently) and x_t = a x0 + b eps with a = sqrt(ab), b = sqrt(1 - ab),
x_t is Gaussian with variance a^2 s^2 + b^2, and the minimum-MSE predictions are linear in x_t:

    E[x0 | x_t] = m + a s^2 (x_t - a m) / (a^2 s^2 + b^2)      E[eps | x_t] = b (x_t - a m) / (a^2 s^2 + b^2)

A perfect sampler driven by it must return N(m, s^2); the gap measures the sampler's own error.

A perfectly *distilled* model (ADD, consistency models) instead predicts where the probability-flow ODE
would end: x0 = m + s (x_t - a m) / sqrt(a^2 s^2 + b^2), which maps N(a m, a^2 s^2 + b^2) onto N(m, s^2) in one step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from ldm_lab.diffusion.parameterisation import Prediction, append_dims, check_prediction, velocity
from ldm_lab.diffusion.sampling import sample
from ldm_lab.diffusion.schedules import NoiseSchedule
from ldm_lab.diffusion.settings import SamplingSettings


@dataclass(frozen=True)
class GaussianOracle:
    """The exact eps / v / x0 predictor for data N(mean, std^2), usable as any sampler's ``model_fn``."""

    schedule: NoiseSchedule
    mean: float = 0.5
    std: float = 0.25
    prediction: Prediction | str = "eps"
    distilled: bool = False   # predict the ODE endpoint (a perfect one-step student) instead of E[x0 | x_t]

    def __call__(self, x_t: Tensor, timesteps: Tensor) -> Tensor:
        check_prediction(self.prediction)
        alpha_bar = 1 / (1 + self.schedule.sigma_at(timesteps) ** 2)           # sigma_at interpolates
        alpha_bar = append_dims(alpha_bar.to(x_t), x_t.ndim)
        a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        variance = a**2 * self.std**2 + b**2                                  # of x_t
        if self.distilled:
            x0 = self.mean + self.std * (x_t - a * self.mean) / variance.sqrt()
            eps = (x_t - a * x0) / b
        else:
            residual = (x_t - a * self.mean) / variance
            x0, eps = self.mean + a * self.std**2 * residual, b * residual
        if self.prediction == "eps":
            return eps
        return velocity(x0, eps, alpha_bar) if self.prediction == "v" else x0


def gaussian_fit_error(samples: Tensor, mean: float, std: float) -> dict[str, float]:
    """How far the samples' mean and std are from the target, and the 2-Wasserstein distance between the
    fitted Gaussian and N(mean, std^2): sqrt((m - mean)^2 + (s - std)^2)."""
    sample_mean, sample_std = samples.double().mean().item(), samples.double().std().item()
    w2 = ((sample_mean - mean) ** 2 + (sample_std - std) ** 2) ** 0.5
    return {"mean_error": sample_mean - mean, "std_error": sample_std - std, "w2": w2}


def sampler_error_table(samplers: Sequence[str], steps: Sequence[int], *, schedule: NoiseSchedule,
                        prediction: Prediction | str = "eps", timestep_spacing: str = "trailing",
                        shape: tuple[int, ...] = (16, 1, 64, 64), mean: float = 0.5, std: float = 0.25,
                        seed: int = 0) -> pd.DataFrame:
    """Sample the Gaussian oracle with each sampler at each step count; one row per (sampler, steps), with the
    number of model calls (Heun makes two per step) and the errors of :func:`gaussian_fit_error`."""
    oracle = GaussianOracle(schedule, mean, std, prediction)
    calls = 0

    def counted(x_t: Tensor, timesteps: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return oracle(x_t, timesteps)

    rows = []
    for name in samplers:
        for n in steps:
            calls = 0
            generator = torch.Generator().manual_seed(seed)
            noise = torch.randn(shape, generator=generator)
            settings = SamplingSettings(sampler=name, steps=n, timestep_spacing=timestep_spacing)
            x0 = sample(counted, noise, settings, schedule=schedule, prediction=prediction, generator=generator,
                        progress=False)
            rows.append({"sampler": name, "steps": n, "model_calls": calls, **gaussian_fit_error(x0, mean, std)})
    return pd.DataFrame(rows)
