"""Noise schedules of the discrete-time forward process q(x_t | x_0) = N(sqrt(ab_t) x_0, (1 - ab_t) I).

A schedule is the table ``alphas_cumprod`` (ab_t, t = 0 … T-1). Everything else is a view of it:
the signal-to-noise ratio SNR_t = ab_t / (1 - ab_t) and the Karras noise level sigma_t = sqrt((1 - ab_t) / ab_t)
= SNR_t^(-1/2), the standard deviation of the noise in the variance-exploding scaling x_t / sqrt(ab_t).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import pandas as pd
import torch
from torch import Tensor

from ldm_lab.names import unknown_name_error



class Schedule(str, Enum):
    """The beta schedules, by the names diffusers uses. A plain string works too."""

    SCALED_LINEAR = "scaled_linear"  # LDM/SD: linspace(sqrt(0.00085), sqrt(0.012))**2 (LDM's code calls it "linear")
    LINEAR = "linear"                # DDPM: linspace(1e-4, 0.02)
    COSINE = "cosine"                # Nichol & Dhariwal 2021 (diffusers: "squaredcos_cap_v2")


# diffusers' floor for ab_T under zero-terminal SNR: sigma_T = 2**12 stays finite in the sigma view.
ZERO_SNR_ALPHA_BAR_FLOOR = 2.0**-24


def scaled_linear_betas(num_train_timesteps: int = 1000, beta_start: float = 0.00085,
                        beta_end: float = 0.012) -> Tensor:
    """LDM / Stable Diffusion's schedule, called "linear" in their configs: linear in sqrt(beta)."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2


def linear_betas(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's schedule (Ho et al. 2020, §4): beta linear in t."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def cosine_betas(num_train_timesteps: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021, eq. 17: ab(t) = cos^2((t/T + s) / (1 + s) * pi/2), betas clipped at 0.999."""
    def alpha_bar(t: float) -> float:
        return math.cos((t / num_train_timesteps + offset) / (1 + offset) * math.pi / 2) ** 2

    betas = [1 - alpha_bar(t + 1) / alpha_bar(t) for t in range(num_train_timesteps)]
    return torch.tensor(betas, dtype=torch.float64).clamp(max=max_beta)


BETA_SCHEDULES: dict[str, Callable[..., Tensor]] = {
    Schedule.SCALED_LINEAR.value: scaled_linear_betas,
    Schedule.LINEAR.value: linear_betas,
    Schedule.COSINE.value: cosine_betas,
}


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Lin et al. 2023, Algorithm 1: shift and scale sqrt(ab_t) so that ab_T = 0 (pure noise at the
    last step) while ab_0 is unchanged."""
    sqrt_ab = torch.cumprod(1 - betas, dim=0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    alpha_bar = sqrt_ab**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


def check_zero_terminal_snr(prediction: str, what: str = "this model") -> None:
    """Refuse eps-prediction at zero terminal SNR (Lin et al. 2023, §3.2): at SNR_T = 0 the input x_T is pure
    noise, so predicting that noise is trivial and says nothing about x0 = (x_T - sqrt(1 - ab) eps) / sqrt(ab),
    which divides by sqrt(ab_T) = 0."""
    if prediction == "eps":
        raise ValueError(f"{what} uses a zero-terminal-SNR schedule with eps-prediction, which cannot work: at "
                         "SNR = 0 the noise is the input, and x0 cannot be recovered from it (Lin et al. 2023, "
                         "§3.2). Use v-prediction (prediction=Prediction.V, as SD 2 and Lin et al.), or turn "
                         "zero_terminal_snr off.")


@dataclass(frozen=True)
class NoiseSchedule:
    """The discrete forward process (DDPM §2): ab_t for t = 0 … T-1, with its SNR and sigma views."""

    alphas_cumprod: Tensor   # [T] float64, decreasing from ~1 towards 0 (exactly 0 at T-1 under zero-terminal SNR)

    @property
    def num_train_timesteps(self) -> int:
        """T, the number of discrete training timesteps."""
        return self.alphas_cumprod.shape[0]

    @property
    def has_zero_terminal_snr(self) -> bool:
        """ab_{T-1} = 0: the last step is pure noise (Lin et al. 2023)."""
        return bool(self.alphas_cumprod[-1] == 0)

    @property
    def betas(self) -> Tensor:
        """beta_t = 1 - ab_t / ab_{t-1}."""
        ab = self.alphas_cumprod
        return 1 - ab / torch.cat([ab.new_ones(1), ab[:-1]])

    @property
    def snr(self) -> Tensor:
        """SNR_t = ab_t / (1 - ab_t) (Kingma et al. 2021, eq. 1)."""
        return self.alphas_cumprod / (1 - self.alphas_cumprod)

    @property
    def sigmas(self) -> Tensor:
        """[T] sigma_t = sqrt((1 - ab_t) / ab_t); ab_T is floored at 2**-24 so that zero-terminal SNR stays finite."""
        ab = self.alphas_cumprod.clamp(min=ZERO_SNR_ALPHA_BAR_FLOOR)
        return ((1 - ab) / ab).sqrt()

    @property
    def sigma_min(self) -> float:
        """sigma_0, the smallest noise level the model was trained on."""
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """sigma_{T-1}, where sampling starts (2**12 under zero-terminal SNR)."""
        return float(self.sigmas[-1])

    def timestep_at(self, sigma: float | Tensor) -> Tensor:
        """The (fractional) model timestep of a noise level: t interpolated linearly in log sigma,
        as diffusers' ``_sigma_to_t``. Exact at the table's own sigmas. Computed in float64 on the CPU."""
        log_table = self.sigmas.log()                                   # [T], increasing in t
        log_sigma = torch.as_tensor(sigma, dtype=torch.float64).cpu().clamp(min=1e-10).log()
        low = (torch.searchsorted(log_table, log_sigma, right=True) - 1).clamp(0, len(log_table) - 2)
        # Flat where several ab_t fall below the zero-terminal-SNR floor (the linear schedule's last few): a sigma
        # there maps to the later timestep, never to 0 / 0.
        gap = log_table[low + 1] - log_table[low]
        weight = torch.where(gap > 0, (log_sigma - log_table[low]) / gap.clamp(min=1e-300), torch.ones_like(gap))
        return low + weight.clamp(0, 1)

    def sigma_at(self, timestep: float | Tensor) -> Tensor:
        """sigma at (possibly fractional) timesteps: the table at integers, log-linear in between, so that
        ``sigma_at(timestep_at(s)) == s``. Float64 on the CPU."""
        t = torch.as_tensor(timestep, dtype=torch.float64).cpu().clamp(0, self.num_train_timesteps - 1)
        low = t.floor().long().clamp(max=self.num_train_timesteps - 2)
        log_table = self.sigmas.log()
        return torch.lerp(log_table[low], log_table[low + 1], t - low).exp()

    def alpha_bar_at(self, timestep: Tensor) -> Tensor:
        """ab_t at integer timesteps [B], as float32 on the timesteps' device."""
        return self.alphas_cumprod[timestep.long().cpu()].to(device=timestep.device, dtype=torch.float32)


def make_schedule(name: Schedule | str = "scaled_linear", num_train_timesteps: int = 1000, *,
                  zero_terminal_snr: bool = False, **beta_options: float) -> NoiseSchedule:
    """Build a schedule by name ("scaled_linear", "linear", "cosine"); ``beta_options`` go to the beta
    function (e.g. ``beta_start``, ``beta_end``). ``zero_terminal_snr`` applies Lin et al. 2023, Alg. 1."""
    if name not in BETA_SCHEDULES:
        raise unknown_name_error("noise schedule", name, BETA_SCHEDULES,
                                 advice="LDM/SD configs' 'linear' is 'scaled_linear' here.")
    betas = BETA_SCHEDULES[name](num_train_timesteps, **beta_options)
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return NoiseSchedule(alphas_cumprod=torch.cumprod(1 - betas, dim=0))


def as_schedule(schedule: NoiseSchedule | str) -> NoiseSchedule:
    """Accept a schedule or a schedule name."""
    return schedule if isinstance(schedule, NoiseSchedule) else make_schedule(schedule)


def describe_schedules(schedules: dict[str, NoiseSchedule]) -> pd.DataFrame:
    """One row per schedule: how much signal survives at the last step (Lin et al. 2023, Table 1) and where the
    SNR crosses 1."""
    rows = {name: {"sqrt_alpha_bar_T": float(s.alphas_cumprod[-1].sqrt()), "SNR_T": float(s.snr[-1]),
                   "sigma_max": s.sigma_max, "t_where_SNR_is_1": int((s.snr >= 1).sum())}
            for name, s in schedules.items()}
    return pd.DataFrame.from_dict(rows, orient="index")
