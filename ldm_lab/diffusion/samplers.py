"""Samplers as single update rules in sigma space, x = x0 + sigma * eps (Karras et al. 2022, §3).

Each sampler is a small frozen dataclass with ``step(denoise, x, sigma, sigma_next, state) -> x_next``;
:func:`run_sampler` walks a decreasing list of sigmas. In this scaling the classic samplers are special cases:
DDIM (Song et al. 2021, §4.3) *is* Euler's method on dx/dsigma = (x - D(x; sigma)) / sigma, and DDPM's ancestral
step is DDIM with eta = 1, i.e. Euler-ancestral. They differ from the Karras-style samplers only by the noise
levels they visit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ldm_lab.diffusion.discretisation import FinalSigma
from ldm_lab.diffusion.noise import standard_normal
from ldm_lab.names import unknown_name_error

DenoiseFn = Callable[[Tensor, float], Tensor]     # D(x; sigma) -> x0 estimate, see denoiser.Denoiser
AfterStep = Callable[[Tensor, float], Tensor]     # (x, sigma_next) -> x, e.g. inpainting's mask blending


@dataclass
class SamplerState:
    """What a step may carry to the next one."""

    generator: torch.Generator | None = None   # source of the fresh noise ancestral steps add
    previous_x0: Tensor | None = None          # the last step's denoised estimate (multistep solvers)
    previous_sigma: float | None = None        # ... and the noise level it was made at


class SamplerStep(Protocol):
    def step(self, denoise: DenoiseFn, x: Tensor, sigma: float, sigma_next: float,
             state: SamplerState) -> Tensor: ...


def ode_derivative(x: Tensor, x0: Tensor, sigma: float) -> Tensor:
    """dx/dsigma of the probability-flow ODE (Karras et al. 2022, eq. 3 with sigma(t) = t): the noise direction."""
    return (x - x0) / sigma


def ancestral_sigmas(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """Split a step sigma -> sigma_next into a deterministic move to sigma_down and fresh noise of std sigma_up,
    with sigma_down^2 + sigma_up^2 = sigma_next^2. eta scales DDIM's sigma_t (Song et al. 2021, eq. 16)."""
    if sigma_next == 0:
        return 0.0, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


@dataclass(frozen=True)
class Euler:
    """First-order ODE step (Karras et al. 2022, Alg. 1 without the Heun correction). Equal to DDIM with eta = 0."""

    def step(self, denoise: DenoiseFn, x: Tensor, sigma: float, sigma_next: float, state: SamplerState) -> Tensor:
        return x + (sigma_next - sigma) * ode_derivative(x, denoise(x, sigma), sigma)


@dataclass(frozen=True)
class EulerAncestral:
    """Euler to sigma_down, then add fresh noise of std sigma_up. eta = 0 is DDIM (deterministic), eta = 1 is
    DDPM's ancestral sampler (Ho et al. 2020, Alg. 2; Song et al. 2021, §4.1), the same update as diffusers'
    DDPMScheduler and EulerAncestralDiscreteScheduler."""

    eta: float = 1.0   # 0: DDIM; 1: DDPM / Euler-ancestral; in between: DDIM(eta)

    def step(self, denoise: DenoiseFn, x: Tensor, sigma: float, sigma_next: float, state: SamplerState) -> Tensor:
        sigma_down, sigma_up = ancestral_sigmas(sigma, sigma_next, self.eta)
        x = x + (sigma_down - sigma) * ode_derivative(x, denoise(x, sigma), sigma)
        if self.eta > 0:   # draw even when sigma_up = 0, so every step consumes one draw (as diffusers does)
            x = x + sigma_up * standard_normal(x, state.generator)
        return x


@dataclass(frozen=True)
class Heun:
    """Second-order ODE step: Euler, then average the slopes at both ends (Karras et al. 2022, Alg. 1).
    Two model calls per step; the last step (to sigma = 0) is plain Euler."""

    def step(self, denoise: DenoiseFn, x: Tensor, sigma: float, sigma_next: float, state: SamplerState) -> Tensor:
        slope = ode_derivative(x, denoise(x, sigma), sigma)
        x_euler = x + (sigma_next - sigma) * slope
        if sigma_next == 0:
            return x_euler
        slope_next = ode_derivative(x_euler, denoise(x_euler, sigma_next), sigma_next)
        return x + (sigma_next - sigma) * (slope + slope_next) / 2


@dataclass(frozen=True)
class DPMSolverPP2M:
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): exact in the linear part of the ODE, with the x0 estimate
    extrapolated linearly in log-SNR from the previous step. First order on the first and last steps."""

    def step(self, denoise: DenoiseFn, x: Tensor, sigma: float, sigma_next: float, state: SamplerState) -> Tensor:
        x0 = denoise(x, sigma)
        previous_x0, previous_sigma = state.previous_x0, state.previous_sigma
        state.previous_x0, state.previous_sigma = x0, sigma
        if sigma_next == 0:
            return x0
        h = math.log(sigma / sigma_next)                          # step in lambda = -log sigma
        if previous_x0 is not None:
            r = math.log(previous_sigma / sigma) / h              # previous step length / this one
            x0 = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous_x0
        return (sigma_next / sigma) * x - math.expm1(-h) * x0


@dataclass(frozen=True)
class ConsistencyMultistep:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1): jump to the clean estimate, then re-noise it to
    the next level with fresh noise, forgetting the current noise entirely. Meant for distilled one-to-four-step
    students; use trailing timesteps so that the first step starts from pure noise (t = T-1). At one step it is
    SDXL-Turbo's sampler; at two or more, the official Turbo demo uses Euler-ancestral
    (``turbo_euler_ancestral``), which keeps part of the current noise."""

    def step(self, denoise: DenoiseFn, x: Tensor, sigma: float, sigma_next: float, state: SamplerState) -> Tensor:
        x0 = denoise(x, sigma)
        return x0 if sigma_next == 0 else x0 + sigma_next * standard_normal(x0, state.generator)


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its update rule and which noise levels it visits."""

    step: SamplerStep             # the update rule
    karras_sigmas: bool = False   # visit Karras et al.'s rho = 7 levels instead of the spaced timesteps' sigmas
    final_sigma: FinalSigma = FinalSigma.ZERO  # where the last step lands: 0, or sigma_0 as the official DDIM
    timesteps: tuple[int, ...] | None = None   # fixed timesteps: n steps visit the first n, then the final sigma


# SDXL-Turbo's official demo (generative-models, scripts/demo/turbo.py): SubstepSampler picks entries
# [0, 100, 200, 300][:n] of LegacyDDPMDiscretization's 1000 descending sigmas, i.e. timesteps 999, 899, 799, 699,
# then 0, and steps them with EulerAncestralSampler(eta=1), without guidance.
TURBO_DEMO_TIMESTEPS: tuple[int, ...] = (999, 899, 799, 699)

SAMPLERS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(EulerAncestral(eta=1.0)),
    "ddim": SamplerSpec(EulerAncestral(eta=0.0), final_sigma=FinalSigma.SIGMA_MIN),   # LDM's DDIMSampler, SD's config
    "euler": SamplerSpec(Euler()),
    "euler_ancestral": SamplerSpec(EulerAncestral(eta=1.0)),
    "heun": SamplerSpec(Heun()),
    "dpmpp_2m": SamplerSpec(DPMSolverPP2M()),
    "dpmpp_2m_karras": SamplerSpec(DPMSolverPP2M(), karras_sigmas=True),
    "euler_karras": SamplerSpec(Euler(), karras_sigmas=True),
    "consistency": SamplerSpec(ConsistencyMultistep()),
    "turbo_euler_ancestral": SamplerSpec(EulerAncestral(eta=1.0), timesteps=TURBO_DEMO_TIMESTEPS),
}

# Old names that still work, with a warning, and the registered sampler they mean.
DEPRECATED_SAMPLERS: dict[str, str] = {
    "few_step": "consistency",   # renamed: it is consistency-model sampling, not SDXL-Turbo's multistep sampler
}


def get_sampler(sampler: str | SamplerSpec | SamplerStep) -> SamplerSpec:
    """A sampler by registry name, or a spec, or a bare update rule (e.g. ``EulerAncestral(eta=0.5)``)."""
    if isinstance(sampler, SamplerSpec):
        return sampler
    if not isinstance(sampler, str):
        return SamplerSpec(sampler)
    if sampler in DEPRECATED_SAMPLERS:
        warnings.warn(f"sampler {sampler!r} is now called {DEPRECATED_SAMPLERS[sampler]!r}; for SDXL-Turbo's own "
                      "multistep sampler use 'turbo_euler_ancestral'.", DeprecationWarning, stacklevel=3)
        return SAMPLERS[DEPRECATED_SAMPLERS[sampler]]
    if sampler not in SAMPLERS:
        raise unknown_name_error("sampler", sampler, SAMPLERS,
                                 advice="Or pass an update rule such as EulerAncestral(eta=0.5).")
    return SAMPLERS[sampler]


def run_sampler(step: SamplerStep, denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *,
                generator: torch.Generator | None = None, after_step: AfterStep | None = None,
                progress: bool = True) -> Tensor:
    """Walk x from sigmas[0] down to sigmas[-1] (usually 0) with one update rule."""
    state = SamplerState(generator=generator)
    levels = [float(s) for s in sigmas]
    for sigma, sigma_next in tqdm(list(zip(levels[:-1], levels[1:])), disable=not progress, desc="sampling"):
        x = step.step(denoise, x, sigma, sigma_next, state)
        if after_step is not None:
            x = after_step(x, sigma_next)
    return x
