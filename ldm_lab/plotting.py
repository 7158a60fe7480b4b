"""Figures for the notebooks. Each function draws one figure, optionally saves it, and returns it.

Images are tensors [N, C, H, W] in [-1, 1] (C = 1 or 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from ldm_lab.diffusion.parameterisation import add_noise, velocity
from ldm_lab.diffusion.schedules import NoiseSchedule


def _finish(fig: Figure, save: str | Path | None) -> Figure:
    fig.tight_layout()
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=120, bbox_inches="tight")
    return fig


def to_display(image: Tensor) -> np.ndarray:
    """[C, H, W] in [-1, 1] -> an array imshow understands ([H, W] grey or [H, W, 3])."""
    array = ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def _show(ax: plt.Axes, image: Tensor, title: str | None = None) -> None:
    ax.imshow(to_display(image), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def image_rows(rows: Mapping[str, Tensor], *, column_titles: Sequence[str] | None = None, title: str | None = None,
               save: str | Path | None = None) -> Figure:
    """One row of images per entry, labelled by its key."""
    num_cols = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), num_cols, figsize=(1.2 * num_cols + 1, 1.3 * len(rows)), squeeze=False)
    for row, (label, images) in enumerate(rows.items()):
        for col in range(num_cols):
            ax = axes[row, col]
            if col < len(images):
                _show(ax, images[col], column_titles[col] if column_titles and row == 0 else None)
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title)
    return _finish(fig, save)


def forward_process(images: Tensor, schedule: NoiseSchedule, timesteps: Sequence[int], *, seed: int = 0,
                    save: str | Path | None = None) -> Figure:
    """x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps for each image (rows) at each timestep (columns)."""
    eps = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    rows = {}
    for i, image in enumerate(images):
        ab = schedule.alphas_cumprod[list(timesteps)].float().reshape(-1, 1, 1, 1)
        rows[f"image {i}"] = add_noise(image.float().cpu(), eps[i], ab)
    titles = [f"t={t}\nSNR={float(schedule.snr[t]):.2g}" for t in timesteps]
    return image_rows(rows, column_titles=titles, save=save)


def snr_curves(schedules: Mapping[str, NoiseSchedule], *, save: str | Path | None = None) -> Figure:
    """log10 SNR_t and sqrt(ab_t) (how much of the image is left) against t, one line per schedule."""
    fig, (ax_snr, ax_signal) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, schedule in schedules.items():
        t = np.arange(schedule.num_train_timesteps)
        ax_snr.plot(t, np.log10(schedule.snr.clamp(min=1e-12).numpy()), label=name)
        ax_signal.plot(t, schedule.alphas_cumprod.sqrt().numpy(), label=name)
    ax_snr.set(xlabel="timestep t", ylabel="log10 SNR", title="signal-to-noise ratio (0 at T-1: log10 = -12 floor)")
    ax_signal.set(xlabel="timestep t", ylabel="sqrt(alpha_bar)", title="weight of x0 in x_t", yscale="log",
                  ylim=(1e-4, 1.1))
    ax_snr.legend(fontsize=8)
    return _finish(fig, save)


def parameterisations(image: Tensor, schedule: NoiseSchedule, timesteps: Sequence[int], *, seed: int = 0,
                      save: str | Path | None = None) -> Figure:
    """For one image: x_t and the three things a network may predict from it (eps, v, x0), per timestep."""
    x0 = image.float().cpu().unsqueeze(0).expand(len(timesteps), -1, -1, -1)
    eps = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed)).expand_as(x0)
    ab = schedule.alphas_cumprod[list(timesteps)].float().reshape(-1, 1, 1, 1)
    rows = {"x_t (input)": add_noise(x0, eps, ab), "eps target": eps / 2.5, "v target": velocity(x0, eps, ab) / 2.5,
            "x0 target": x0}
    titles = [f"t={t}" for t in timesteps]
    return image_rows(rows, column_titles=titles, title="what the network sees, and three targets it may learn "
                      "(eps and v shown at 1/2.5 scale)", save=save)


def loss_curve(history: Sequence[float], *, window: int = 25, save: str | Path | None = None) -> Figure:
    """Training loss per step, with a moving average."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(history, alpha=0.3, label="per step")
    if len(history) >= window:
        smooth = np.convolve(history, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window - 1, len(history)), smooth, label=f"mean of {window}")
    ax.set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax.legend(fontsize=8)
    return _finish(fig, save)


def error_vs_steps(table: pd.DataFrame, *, metric: str = "w2", save: str | Path | None = None) -> Figure:
    """One line per sampler: ``metric`` against the number of steps (log-log)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, rows in table.groupby("sampler", sort=False):
        ax.plot(rows["steps"], rows[metric].abs(), marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="sampler steps", ylabel=metric,
           title=f"Gaussian oracle: {metric} between samples and data")
    ax.legend(fontsize=7, ncol=2)
    return _finish(fig, save)
