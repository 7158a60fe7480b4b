"""Figures for the notebooks. Each function draws one figure, optionally saves it, and returns it.

Images are tensors [N, C, H, W] in [-1, 1] (C = 1 or 3).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter
from PIL import Image
from torch import Tensor

from ldm_lab.diffusion.parameterisation import add_noise, velocity
from ldm_lab.diffusion.schedules import NoiseSchedule


def _finish(fig: Figure, save: str | Path | None) -> Figure:
    fig.tight_layout()
    if save is not None:
        save_png(fig, save)
    return fig


def save_png(fig: Figure, path: str | Path, dpi: int = 120) -> None:
    """Save ``fig`` as a 256-colour PNG: grids of generated images are a third of their true-colour size, and the
    committed figures (and the repository) stay small."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    image = Image.open(buffer).convert("RGB")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


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


# ---------------------------------------------------------------------------------- conditioning (notebook 04)
def _draw_boxes(ax: plt.Axes, boxes: Tensor, names: Sequence[str], size: tuple[int, int]) -> None:
    """Outline normalised (top, left, bottom, right) boxes on an image of ``size`` (height, width) pixels."""
    height, width = size
    for (top, left, bottom, right), name in zip(boxes.tolist(), names):
        ax.add_patch(plt.Rectangle((left * width - 0.5, top * height - 0.5), (right - left) * width,
                                   (bottom - top) * height, fill=False, edgecolor="white", linewidth=1.2))
        ax.text(left * width, top * height, name, color="white", fontsize=6, va="bottom",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "linewidth": 0})


def images_with_boxes(rows: Mapping[str, Tensor], boxes: Sequence[Tensor], names: Sequence[Sequence[str]], *,
                      title: str | None = None, save: str | Path | None = None) -> Figure:
    """Rows of images ``[N, C, H, W]`` (e.g. "requested", "generated"), each column outlined with its layout:
    ``boxes[i]`` ``[n_i, 4]`` normalised (top, left, bottom, right), labelled ``names[i]``."""
    fig = image_rows(rows, title=title)
    for row_axes, images in zip(np.reshape(fig.axes, (len(rows), -1)), rows.values()):
        for ax, image, box, labels in zip(row_axes, images, boxes, names):
            _draw_boxes(ax, box, labels, tuple(image.shape[-2:]))
    return _finish(fig, save)


def class_map_to_image(segmentation: Tensor, num_classes: int) -> Tensor:
    """Class maps ``[N, H, W]`` (0 background) -> RGB images ``[N, 3, H, W]`` in [-1, 1], background black and
    one tab10 colour per class, for showing masks next to images."""
    colours = torch.tensor([(0.0, 0.0, 0.0)] + [plt.get_cmap("tab10")(k)[:3] for k in range(num_classes - 1)])
    return colours[segmentation.long().cpu()].permute(0, 3, 1, 2) * 2 - 1


def attention_per_token(images: Sequence[Tensor], maps: Sequence[Tensor], tokens: Sequence[Sequence[str]], *,
                        titles: Sequence[str] | None = None, save: str | Path | None = None) -> Figure:
    """Where each token's cross-attention mass falls, one row per image: the image ``[C, H, W]``, then per token
    its map (``maps[i]`` ``[tokens, h, w]``, ``ldm_lab.tasks.cross_attention``'s maps of image i, labelled by
    ``tokens[i]``). Every map shares one colour scale, 0 to the largest value of any map, with one colour bar:
    a pixel's attention sums to 1 over all tokens, so the colour reads as the share that token receives."""
    heats = [F.interpolate(m[None].float().cpu(), size=tuple(image.shape[-2:]), mode="bilinear",
                           align_corners=False)[0] for image, m in zip(images, maps)]
    norm = plt.Normalize(vmin=0.0, vmax=max(float(h.max()) for h in heats))
    num_cols = 1 + max(len(t) for t in tokens)
    fig, axes = plt.subplots(len(images), num_cols, figsize=(1.3 * num_cols + 0.8, 1.55 * len(images)),
                             squeeze=False)
    for row, (image, heat, labels) in enumerate(zip(images, heats, tokens)):
        _show(axes[row, 0], image, titles[row] if titles else "image")
        for ax, token_heat, token in zip(axes[row, 1:], heat, labels):
            ax.imshow(token_heat.numpy(), cmap="inferno", norm=norm)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(token, fontsize=8)
        for ax in axes[row, 1 + len(labels):]:
            ax.axis("off")
    fig.tight_layout()
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="inferno"), ax=axes.ravel().tolist(), fraction=0.02,
                 pad=0.01, label="share of the pixel's attention")
    if save is not None:
        save_png(fig, save)
    return fig


def _error_bars(table: pd.DataFrame, column: str) -> list[pd.Series]:
    """matplotlib's [below, above] bar lengths from ``column``'s ``_ci_low`` / ``_ci_high`` bounds. At small N every
    bootstrap FID may lie above the estimate (FID's bias), so a side can be negative: it is drawn as 0."""
    value = table[column]
    return [(value - table[f"{column}_ci_low"]).clip(lower=0), (table[f"{column}_ci_high"] - value).clip(lower=0)]


def fid_vs_clip_score(table: pd.DataFrame, *, real: Mapping[str, float] | None = None, by: str | None = None,
                      save: str | Path | None = None) -> Figure:
    """The Stable Diffusion model cards' curve: FID against CLIP score, one point per guidance scale (labelled),
    with the bootstrap intervals of ``ldm_lab.metrics.guidance_sweep``'s table as error bars; ``by``: a column
    whose values each get a curve of their own (the cards' one curve per checkpoint), labelled at both ends.
    ``real``: the real-vs-real row (``ldm_lab.metrics.calibration.real_vs_real_point``), drawn as a line at its
    FID over a band at its interval: the floor of FID at this N. (Its CLIP score is left out: real pairs set
    their own scale.)"""
    fig, ax = plt.subplots(figsize=(5.2 if by is None else 6.4, 3.8 if by is None else 4.4))
    groups = [(None, table)] if by is None else list(table.groupby(by, sort=False))
    for index, (name, rows) in enumerate(groups):
        rows = rows.sort_values("guidance_scale")
        ax.errorbar(rows["clip_score"], rows["fid"], xerr=_error_bars(rows, "clip_score"),
                    yerr=_error_bars(rows, "fid"), marker="o", capsize=2, linewidth=1, color=f"C{index}",
                    label="generated" if name is None else str(name))
        labelled = rows if by is None else rows.iloc[[0, -1]]
        for _, row in labelled.iterrows():
            ax.annotate(f"w={row['guidance_scale']:g}", (row["clip_score"], row["fid"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 4), color=f"C{index}")
    if real is not None:
        ax.axhspan(real["fid_ci_low"], real["fid_ci_high"], color="C7", alpha=0.2, linewidth=0)
        ax.axhline(real["fid"], color="C7", linestyle="--", linewidth=1,
                   label=f"real vs real, {real['num_samples']} images (95% CI shaded)")
    if real is not None or by is not None:
        ax.legend(fontsize=7, loc="best")
    space, encoder, n = table["feature_space"].iloc[0], table["clip_encoder"].iloc[0], table["num_samples"].iloc[0]
    ax.set(xlabel=f"CLIP score ({encoder}) → better prompt adherence", ylabel=f"FID ({space} features)",
           title=f"classifier-free guidance sweep, {n} samples per point")
    return _finish(fig, save)


def interval_bars(table: pd.DataFrame, metrics: Sequence[str], *, x: str = "model", hue: str | None = None,
                  title: str | None = None, save: str | Path | None = None) -> Figure:
    """One panel per metric: a bar per row (labelled by column ``x``), or, with ``hue``, bars grouped by ``x``
    with one colour per ``hue`` value, each with its 95% interval (``<metric>_ci_low`` / ``_ci_high``)."""
    hues = list(dict.fromkeys(table[hue])) if hue else [None]
    groups = list(dict.fromkeys(table[x]))
    width = 0.8 / len(hues)
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(3.2, 0.5 * len(groups) * len(hues)) * len(metrics) / 1.4,
                                                       3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, value in enumerate(hues):
            rows = table if hue is None else table[table[hue] == value]
            positions = np.array([groups.index(g) for g in rows[x]]) + (i - (len(hues) - 1) / 2) * width
            ax.bar(positions, rows[metric], width, yerr=_error_bars(rows, metric), capsize=3, label=value,
                   color=None if hue else [f"C{groups.index(g)}" for g in rows[x]])
        ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=7)
        ax.set(title=metric, ylabel="estimate (95% CI)")
    if hue:
        axes[0][-1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _finish(fig, save)


def baseline_bars(table: pd.DataFrame, *, save: str | Path | None = None) -> Figure:
    """Means with their confidence intervals, one panel per metric and one bar per condition
    (``ldm_lab.metrics.adherence.baseline_table`` rows, concatenated)."""
    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        rows = table[table["metric"] == metric]
        ax.bar(rows["condition"], rows["mean"], color=[f"C{i}" for i in range(len(rows))],
               yerr=_error_bars(rows, "mean"), capsize=4)
        ax.set(title=metric, ylim=(0, 1), ylabel="mean (95% CI)")
        ax.tick_params(axis="x", labelsize=7, rotation=15)
    return _finish(fig, save)


# ------------------------------------------------------------------- autoencoders and compression (02, 03)
def factor_colour(f: int) -> str:
    """One colour per downsampling factor f = 1, 2, 4, ..., 32, the same in every figure of notebooks 02 and 03."""
    return f"C{int(np.log2(f))}"


def _factor_axis(ax: plt.Axes, factors: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(factors), [str(f) for f in factors])
    ax.set_xlabel("downsampling factor f")


def metric_vs_factor(table: pd.DataFrame, metrics: Sequence[str], *, paper: pd.DataFrame | None = None,
                     save: str | Path | None = None) -> Figure:
    """LDM Tab. 8 as curves: one panel per metric (columns of ``table``, one row per regularizer and f), one line
    per regularizer, ± the ``<metric>_std`` column where there is one. ``paper`` (columns regularizer, f and some
    of ``metrics``) gets a row of panels of its own, below ours with the same x axis and its own y axis: other
    data, resolution and feature space, so only the shapes of the curves compare, never their heights (two
    curves on twin y-axes look alike whatever their scales)."""
    with_paper = [metric for metric in metrics if paper is not None and metric in paper]
    rows = 2 if with_paper else 1
    fig, axes = plt.subplots(rows, len(metrics), figsize=(3.4 * len(metrics), 3.0 * rows), squeeze=False)
    factors = sorted(table["f"].unique())
    for ax, metric in zip(axes[0], metrics):
        for index, (regularizer, group) in enumerate(table.sort_values("f").groupby("regularizer")):
            spread = group[f"{metric}_std"] if f"{metric}_std" in group else None
            ax.errorbar(group["f"], group[metric], yerr=spread, marker="o", capsize=2, color=f"C{index}",
                        label=f"{regularizer.upper()} (ours)")
        _factor_axis(ax, factors)
        ax.set_title(f"{metric} (ours, 64x64 emoji)", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    if with_paper:
        for ax, metric in zip(axes[1], metrics):
            if metric in with_paper:
                _paper_lines(ax, paper, metric)
                _factor_axis(ax, sorted(set(factors) | set(paper["f"])))
            else:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{metric}: not in the paper's table", ha="center", va="center", fontsize=8,
                        transform=ax.transAxes)
    return _finish(fig, save)


def _paper_lines(ax: plt.Axes, paper: pd.DataFrame, metric: str) -> None:
    """The paper's values of ``metric`` on a panel of their own, dashed, one line per regularizer."""
    for index, (regularizer, rows) in enumerate(paper.dropna(subset=[metric]).sort_values("f").groupby("regularizer")):
        ax.plot(rows["f"], rows[metric], linestyle="--", marker="x", color=f"C{index}",
                label=f"{regularizer.upper()} (paper)")
    ax.set_title(f"{metric} (paper, Tab. 8: ImageNet 256x256)", fontsize=9)
    ax.legend(fontsize=7)


def latent_channels(latents: Mapping[str, Tensor], *, image: Tensor | None = None, max_channels: int = 8,
                    save: str | Path | None = None) -> Figure:
    """One row per first stage: the channels of one image's latent ``[c, h, w]`` (at most ``max_channels``), each
    on a diverging colour scale of ± 3 std of that row's latent, so rows of very different scale compare. The
    encoded ``image`` ``[C, H, W]``, if given, leads every row."""
    lead = int(image is not None)
    num_cols = lead + min(max_channels, max(z.shape[0] for z in latents.values()))
    fig, axes = plt.subplots(len(latents), num_cols, figsize=(1.1 * num_cols + 1.2, 1.15 * len(latents)),
                             squeeze=False)
    for row, (label, z) in enumerate(latents.items()):
        z = z.detach().float().cpu()
        limit = 3 * z.std().item() or 1.0
        if lead:
            _show(axes[row, 0], image, "image" if row == 0 else None)
        for channel, ax in enumerate(axes[row, lead:]):
            ax.set_xticks([]), ax.set_yticks([])
            if channel < z.shape[0]:
                ax.imshow(z[channel].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle("latent channels of one image (colour: ± 3 std of each row)", fontsize=9)
    return _finish(fig, save)


def latent_histograms(latents: Mapping[str, Tensor], scales: Mapping[str, float], *,
                      save: str | Path | None = None) -> Figure:
    """Why latents are scaled (LDM App. G): the distribution of each first stage's latent values as encoded
    (left) and multiplied by its scale factor 1 / std (right), where the diffusion model expects unit variance."""
    fig, (raw, scaled) = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, z in latents.items():
        values = z.detach().float().flatten().cpu().numpy()
        raw.hist(values, bins=80, histtype="step", density=True, label=label)
        scaled.hist(values * scales[label], bins=80, histtype="step", density=True, range=(-5, 5))
    grid = np.linspace(-5, 5, 200)
    scaled.plot(grid, np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
    raw.set(title="E(x) as encoded", xlabel="latent value", ylabel="density", yscale="log")
    scaled.set(title="scale · E(x), scale = 1 / std", xlabel="latent value", yscale="log")
    raw.legend(fontsize=6, ncol=2), scaled.legend(fontsize=7)
    return _finish(fig, save)


def reconstruction_triplet(original: Tensor, reconstruction: Tensor, *, gain: float = 4.0) -> Tensor:
    """``[3, C, H, W]`` in [-1, 1]: the image, its reconstruction, and |difference| x ``gain`` (black: exact)."""
    error = ((original - reconstruction).abs() * gain / 2).clamp(0, 1) * 2 - 1
    return torch.stack([original, reconstruction, error])


def samples_by_fid(strips: Mapping[str, Tensor], fids: Mapping[str, tuple[float, float, float]], *,
                   feature_space: str = "lab-clip", save: str | Path | None = None) -> Figure:
    """What an FID number looks like: one strip of images ``[n, C, H, W]`` in [-1, 1] per set (real images and
    each model's samples), sorted from the lowest FID to the highest, each labelled with its FID and 95 %
    interval ``fids[name] = (fid, low, high)``."""
    order = sorted(strips, key=lambda name: fids[name][0])
    rows = {f"{name}\nFID {fids[name][0]:.1f}\n[{fids[name][1]:.1f}, {fids[name][2]:.1f}]": strips[name]
            for name in order}
    fig = image_rows(rows, title=f"samples sorted by FID ({feature_space} features; lower is closer to real)")
    return _finish(fig, save)


def pipeline_diagram(stages: Sequence, *, title: str = "", per_row: int = 5,
                     save: str | Path | None = None) -> Figure:
    """The LDM pipeline as boxes and arrows, one box per ``ldm_lab.models.pipeline.Stage`` (its name and the
    shape of the real tensor it held), the operation that made each written on the arrow into it; ``per_row``
    boxes a row, rows snaking left to right, then right to left, so every arrow is short."""
    rows = (len(stages) + per_row - 1) // per_row
    fig, ax = plt.subplots(figsize=(2.3 * per_row, 1.45 * rows + 0.4))
    ax.set(xlim=(0, per_row), ylim=(rows, 0)), ax.axis("off")

    def centre(i: int) -> tuple[float, float]:
        row, column = divmod(i, per_row)
        return (column if row % 2 == 0 else per_row - 1 - column) + 0.5, row + 0.5

    for i, stage in enumerate(stages):
        x, y = centre(i)
        shape = "x".join(map(str, stage.shape))
        ax.text(x, y, f"{stage.name}\n{shape}", ha="center", va="center", fontsize=7.5,
                bbox=dict(boxstyle="round,pad=0.4", facecolor="#e8f0fb" if i % 2 == 0 else "#fdf1e4",
                          edgecolor="0.4"))
        if i:
            x0, y0 = centre(i - 1)
            if y0 == y:                                   # along a row, either way
                step = 0.38 if x > x0 else -0.38
                start, end = (x0 + step, y0), (x - step, y)
                ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="0.3"))
                ax.text((start[0] + end[0]) / 2, y - 0.2, stage.made_by, ha="center", va="bottom", fontsize=6,
                        color="0.25")
            else:                                         # down to the next row, same column
                start, end = (x0, y0 + 0.22), (x, y - 0.22)
                ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="0.3"))
                ax.text(x + 0.05, (y0 + y) / 2, stage.made_by, ha="left", va="center", fontsize=6, color="0.25")
    ax.set_title(title or "the latent diffusion pipeline, shapes read off real tensors", fontsize=9)
    return _finish(fig, save)


def fid_vs_steps(table: pd.DataFrame, *, metric: str = "fid", title: str = "",
                 save: str | Path | None = None) -> Figure:
    """LDM Fig. 6: sample quality against training steps, one line per LDM-f, with the ``<metric>_ci_low`` /
    ``_ci_high`` band where the table has it (``ldm_lab.compression.AblationRow`` columns)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for f, rows in table.sort_values("step").groupby("f"):
        ax.plot(rows["step"], rows[metric], marker="o", color=factor_colour(f), label=f"LDM-{f}")
        if f"{metric}_ci_low" in rows:
            ax.fill_between(rows["step"], rows[f"{metric}_ci_low"], rows[f"{metric}_ci_high"],
                            color=factor_colour(f), alpha=0.15)
    space, n = table["feature_space"].iloc[0], int(table["num_samples"].iloc[0])
    ax.set(xlabel="training steps", ylabel=f"{metric.upper()} ({space} features, {n} samples)",
           title=title or f"{metric.upper()} against training steps (lower is better)")
    ax.legend(fontsize=7)
    return _finish(fig, save)


def throughput_bars(table: pd.DataFrame, *, save: str | Path | None = None) -> Figure:
    """LDM Tab. 6's speed columns: train and sample samples/s per LDM-f (one row per f), each bar labelled
    with its speed-up over LDM-1 when LDM-1 is in the table."""
    speed = table.groupby("f")[["train_samples_per_s", "sample_samples_per_s"]].first().sort_index()
    titles = {"train_samples_per_s": "training", "sample_samples_per_s": "sampling"}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (column, title) in zip(axes, titles.items()):
        bars = ax.bar([f"LDM-{f}" for f in speed.index], speed[column], color=[factor_colour(f) for f in speed.index])
        if 1 in speed.index:
            ax.bar_label(bars, [f"{value / speed.loc[1, column]:.1f}x" for value in speed[column]], fontsize=7)
        ax.set(title=title, ylabel="samples / s")
    where = {column: table[column].iloc[0] for column in ("throughput_device", "throughput_batch_size")
             if column in table}
    fig.suptitle(f"throughput on {where.get('throughput_device', '?')}, batch {where.get('throughput_batch_size', '?')}"
                 + (" (labels: speed-up over LDM-1)" if 1 in speed.index else ""), fontsize=9)
    return _finish(fig, save)


def _steps_span(table: pd.DataFrame) -> str:
    steps = sorted({int(step) for step in table["step"]})
    return f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"


def quality_vs_speed(table: pd.DataFrame, *, save: str | Path | None = None) -> Figure:
    """The trade-off of LDM §4.1: FID (with its interval) against sampling speed, one point per LDM-f
    (one row per f, e.g. each model's last checkpoint; the title gives their steps). Down and right is better."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for _, row in table.sort_values("f").iterrows():
        below, above = max(row["fid"] - row["fid_ci_low"], 0), max(row["fid_ci_high"] - row["fid"], 0)
        ax.errorbar(row["sample_samples_per_s"], row["fid"], yerr=[[below], [above]], marker="o", capsize=3,
                    color=factor_colour(int(row["f"])))
        ax.annotate(f"LDM-{int(row['f'])}", (row["sample_samples_per_s"], row["fid"]), fontsize=8,
                    textcoords="offset points", xytext=(5, 4))
    ax.set(xscale="log", xlabel="sampling speed (samples / s, log)", ylabel=f"FID ({table['feature_space'].iloc[0]})",
           title=f"quality vs speed at {_steps_span(table)}")
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g")), ax.xaxis.set_minor_formatter(FormatStrFormatter("%g"))
    return _finish(fig, save)


def fid_vs_sampling_time(table: pd.DataFrame, *, save: str | Path | None = None) -> Figure:
    """LDM Fig. 7: FID (with its interval) against sampling time per image, both on log axes, one line per LDM-f
    through its DDIM step counts (each point labelled with its steps; ``ldm_lab.compression.TradeoffRow``
    columns). Down and left is better."""
    fig, ax = plt.subplots(figsize=(5.8, 4.0))
    for f, rows in table.sort_values("sampler_steps").groupby("f"):
        colour = factor_colour(int(f))
        ax.errorbar(rows["seconds_per_image"] * 1000, rows["fid"], yerr=_error_bars(rows, "fid"), marker="o",
                    capsize=2, linewidth=1, color=colour, label=f"LDM-{int(f)}")
        for _, row in rows.iterrows():
            ax.annotate(str(int(row["sampler_steps"])), (row["seconds_per_image"] * 1000, row["fid"]), fontsize=6,
                        color=colour, textcoords="offset points", xytext=(3, 3))
    n, threads = int(table["num_samples"].iloc[0]), int(table["threads"].iloc[0])
    ax.set(xscale="log", yscale="log", xlabel=f"sampling time per image (ms, {table['device'].iloc[0]}, "
           f"{threads} thread{'s' if threads > 1 else ''}, log)",
           ylabel=f"FID ({table['feature_space'].iloc[0]}, {n} samples, log)",
           title="quality against sampling time (labels: DDIM steps)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g")), axis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.legend(fontsize=7)
    return _finish(fig, save)


def quality_vs_nfe(table: pd.DataFrame, metrics: Sequence[str] = ("kid", "clip_score"), *,
                   save: str | Path | None = None) -> Figure:
    """ADD Fig. 7's axes: quality against network evaluations per image (log scale), the teacher as a line over
    its sampler steps, each student (``model`` rows with ``role`` = student, grouped by ``arm``) as markers, with
    the ``<metric>_ci_low`` / ``_ci_high`` intervals as error bars."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.0 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        teacher = table[table["role"] == "teacher"].sort_values("nfe")
        ax.errorbar(teacher["nfe"], teacher[metric], yerr=_error_bars(teacher, metric), marker="o", capsize=2,
                    color="0.3", linewidth=1, label="teacher (DPM-Solver++, guided)")
        students = table[table["role"] == "student"]
        for i, (arm, rows) in enumerate(students.sort_values("nfe").groupby("arm", sort=False)):
            ax.errorbar(rows["nfe"] * (1.04 ** i), rows[metric], yerr=_error_bars(rows, metric), marker="s",
                        capsize=2, linestyle=":", linewidth=1, color=f"C{i}", label=str(arm))
        ax.set_xscale("log")
        better = "lower" if metric in ("kid", "fid") else "higher"
        ax.set(xlabel="network evaluations per image (NFE)", ylabel=f"{metric} ({better} is better)")
        ax.legend(fontsize=7)
    space, n = table["feature_space"].iloc[0], int(table["num_generated"].iloc[0])
    fig.suptitle(f"quality against NFE ({space} features, {n} images per point)", fontsize=10)
    return _finish(fig, save)
