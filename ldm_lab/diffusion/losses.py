"""Training objectives: DDPM's denoising loss on an eps / v / x0 target with optional min-SNR-gamma weighting,
its distillation into a smaller network, and the rectified-flow objective of SD3.

A loss is a frozen dataclass called as ``loss(model_fn, x0, generator=..., **cond) -> scalar``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ldm_lab.diffusion.denoiser import ModelFn
from ldm_lab.diffusion.noise import standard_normal
from ldm_lab.diffusion.parameterisation import (Prediction, add_noise, append_dims, check_prediction,
                                                flow_interpolate, flow_velocity, training_target)
from ldm_lab.diffusion.schedules import NoiseSchedule, check_zero_terminal_snr


def min_snr_weight(snr: Tensor, prediction: Prediction | str, gamma: float) -> Tensor:
    """Min-SNR-gamma (Hang et al. 2023, §3.4): weight the loss so that its x0-space weight is min(SNR, gamma).
    An eps loss already carries weight SNR in x0 space, a v loss SNR + 1, an x0 loss 1; divide accordingly.

    At SNR = 0 (the last timestep of a zero-terminal-SNR schedule, Lin et al. 2023) every weight is 1, as in the
    Min-SNR repository (``guided_diffusion/gaussian_diffusion.py``: ``mse_loss_weight[snr == 0] = 1.0``): the
    formula would give 0 for v and x0, and a network that never learns its first sampling step (there x0 = -v,
    the data mean) starts every sample from an untrained prediction."""
    clipped = snr.clamp(max=gamma)
    if check_prediction(prediction) == "eps":
        weight = (gamma / snr).clamp(max=1.0)        # = min(SNR, gamma) / SNR, and 1 at SNR = 0
    else:
        weight = clipped / (snr + 1) if prediction == "v" else clipped
    return torch.where(snr == 0, torch.ones_like(weight), weight)


def check_timestep_range(timestep_range: tuple[int, int] | None, num_train_timesteps: int) -> None:
    """A training range of timesteps must be a non-empty [low, high) within [0, T)."""
    if timestep_range is None:
        return
    low, high = timestep_range
    if not 0 <= low < high <= num_train_timesteps:
        raise ValueError(f"timestep_range {timestep_range} must be [low, high) with 0 <= low < high <= "
                         f"{num_train_timesteps}; SDXL's refiner trains on (0, 200), the first 200 noise levels.")


def per_sample_mse(output: Tensor, target: Tensor) -> Tensor:
    """[B] mean squared error over all but the batch dimension."""
    return (output.float() - target.float()).pow(2).flatten(1).mean(dim=1)


class NoisedBatch(NamedTuple):
    """A batch of DDPM's forward process: timesteps ``[B]``, x_t and the regression target (both like x0)."""

    t: Tensor
    x_t: Tensor
    target: Tensor


@dataclass(frozen=True)
class DiffusionLoss:
    """DDPM's simplified objective (Ho et al. 2020, eq. 14), ||target - F(x_t, t)||^2 with t uniform on
    {0, …, T-1}, for an eps, v or x0 target (LDM eq. 2 is the same loss on latents)."""

    schedule: NoiseSchedule
    prediction: Prediction | str = "eps"     # what the network learns to output
    snr_gamma: float | None = None     # min-SNR-gamma weighting; Hang et al. recommend 5. None: unweighted
    timestep_range: tuple[int, int] | None = None  # draw t uniformly from [low, high) only: a low-noise expert
                                       # such as SDXL's refiner trains on (0, 200) (§2.5); None: all T timesteps

    def __post_init__(self) -> None:
        if self.schedule.has_zero_terminal_snr:
            check_zero_terminal_snr(check_prediction(self.prediction), "DiffusionLoss")
        check_timestep_range(self.timestep_range, self.schedule.num_train_timesteps)

    @property
    def timesteps(self) -> tuple[int, int]:
        """[low, high) of the timesteps this loss trains on."""
        return self.timestep_range or (0, self.schedule.num_train_timesteps)

    def noised(self, x0: Tensor, generator: torch.Generator | None = None) -> NoisedBatch:
        """One draw of the forward process for ``x0``: t uniform on the trained range, x_t and the target."""
        device = generator.device if generator is not None else x0.device
        low, high = self.timesteps
        t = torch.randint(low, high, (x0.shape[0],), generator=generator, device=device).to(x0.device)
        eps = standard_normal(x0, generator)
        alpha_bar = append_dims(self.schedule.alpha_bar_at(t), x0.ndim).to(x0.dtype)
        return NoisedBatch(t, add_noise(x0, eps, alpha_bar), training_target(self.prediction, x0, eps, alpha_bar))

    def reduce(self, losses: Tensor, t: Tensor) -> Tensor:
        """The batch loss from per-sample losses ``[B]`` at timesteps ``t``: min-SNR-weighted if asked, averaged."""
        if self.snr_gamma is not None:
            snr = self.schedule.snr[t.cpu()].to(losses)
            losses = losses * min_snr_weight(snr, self.prediction, self.snr_gamma)
        return losses.mean()

    def __call__(self, model_fn: ModelFn, x0: Tensor, *, generator: torch.Generator | None = None,
                 **cond: Tensor) -> Tensor:
        noised = self.noised(x0, generator)
        return self.reduce(per_sample_mse(model_fn(noised.x_t, noised.t, **cond), noised.target), noised.t)


@dataclass(frozen=True)
class DistillationLoss:
    """Output-level knowledge distillation of a diffusion network (BK-SDM, Kim et al. 2023, §3.2, eq. 2-3):
    the task's loss plus ``output_weight`` times the student's squared distance to a frozen teacher's output at
    the same x_t, t and condition (dropped conditions included, so the student learns the teacher's unconditional
    branch too). BK-SDM also matches intermediate features; this keeps the output term only."""

    task: DiffusionLoss
    output_weight: float = 1.0        # lambda_OutKD; BK-SDM uses 1

    def __post_init__(self) -> None:
        if not self.output_weight >= 0:
            raise ValueError(f"output_weight must be >= 0, not {self.output_weight}; 0 trains on the data alone, "
                             "BK-SDM uses 1.")

    def __call__(self, student: ModelFn, teacher: ModelFn, x0: Tensor, *, generator: torch.Generator | None = None,
                 **cond: Tensor) -> Tensor:
        noised = self.task.noised(x0, generator)
        output = student(noised.x_t, noised.t, **cond)
        with torch.no_grad():
            taught = teacher(noised.x_t, noised.t, **cond)
        losses = per_sample_mse(output, noised.target) + self.output_weight * per_sample_mse(output, taught)
        return self.task.reduce(losses, noised.t)


@dataclass(frozen=True)
class RectifiedFlowLoss:
    """Rectified flow as trained in SD3 (Esser et al. 2024, §2-3): x_t = (1 - t) x0 + t eps on a straight
    line, the network predicts the velocity eps - x0, and t is drawn logit-normal (§3.1, "lognorm(0, 1)")."""

    logit_mean: float = 0.0           # location of the logit-normal timestep density
    logit_std: float = 1.0            # its scale; SD3's best setting is (0, 1)
    timestep_scale: float = 1000.0    # the network receives t * 1000, the range of discrete timesteps

    def __call__(self, model_fn: ModelFn, x0: Tensor, *, generator: torch.Generator | None = None,
                 **cond: Tensor) -> Tensor:
        logits = standard_normal(x0.new_empty(x0.shape[0]), generator)
        t = torch.sigmoid(self.logit_mean + self.logit_std * logits)
        noise = standard_normal(x0, generator)
        x_t = flow_interpolate(x0, noise, append_dims(t, x0.ndim))
        return per_sample_mse(model_fn(x_t, t * self.timestep_scale, **cond), flow_velocity(x0, noise)).mean()
