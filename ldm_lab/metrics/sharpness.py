"""Sharpness: how much fine detail an image holds, to measure SDXL's size conditioning (SDXL §2.2).

SDXL conditions on the size an image had before it was resized to the training size. Small originals were
upscaled, so they are blurry; asked for a small ``original_size``, the model should draw blurry images, and
sharper ones as the requested size grows. We measure detail as the energy of the discrete Laplacian of the
luma, the classic focus measure (Pech-Pacheco et al. 2000, "variance of the Laplacian"): an edge blurred over
k pixels has a Laplacian about k^2 times weaker, while flat regions and smooth gradients score near 0. The measure
itself, ``laplacian_energy``, and the refiner's ``detail_score`` live in ``ldm_lab.pixels``, which the data reads too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch import Tensor

from ldm_lab.metrics.bootstrap import mean_interval
from ldm_lab.pixels import (DETAIL_REFERENCE, LAPLACIAN, channel_laplacian_energy, detail_score, laplacian_energy,
                            to_uint8)

SizedDraw = Callable[[tuple[int, int]], Tensor]  # requested original (height, width) -> images in [-1, 1]
Measure = Callable[[Tensor], Tensor]               # what ``draw`` returns -> one sharpness value per image


def image_sharpness(images: Tensor) -> Tensor:
    """Laplacian energy x 1000 (readable numbers) per image, of float images in [-1, 1]: what a viewer sees."""
    return 1000 * laplacian_energy(to_uint8(images))


def latent_sharpness(latents: Tensor) -> Tensor:
    """The Laplacian energy of each latent channel, averaged, per latent ``[N, C, h, w]`` -> ``[N]``: the detail the
    diffusion model drew *before* the decoder, which can add or erase detail of its own."""
    return channel_laplacian_energy(latents)


def sharpness_by_size(draw: SizedDraw, sizes: Sequence[int], num_resamples: int = 1000, seed: int = 0,
                      measure: Measure = image_sharpness) -> pd.DataFrame:
    """Sharpness of what ``draw`` makes for each requested square original size (default: ``image_sharpness``),
    one row per size: mean, bootstrap 95 % interval and sample count. ``draw`` must use the same noise and
    prompts at every size, so image i differs between sizes only by the size condition; the rows then also give
    the *paired* differences — per image, from the smallest size (``difference``) and from the size before
    (``step``), each mean with its interval. Paired intervals are much narrower than the per-size ones: the
    images' own spread in sharpness cancels."""
    values = [measure(draw((side, side))).detach().cpu().numpy() for side in sizes]
    rows = []
    for i, (side, value) in enumerate(zip(sizes, values, strict=True)):
        row = {"original_size": side, "num_samples": len(value)}
        for name, data in (("sharpness", value), ("difference", value - values[0]),
                           ("step", value - values[max(i - 1, 0)])):
            interval = mean_interval(data, num_resamples=num_resamples, seed=seed)
            row |= {name: interval.estimate, f"{name}_ci_low": interval.low, f"{name}_ci_high": interval.high}
        rows.append(row)
    return pd.DataFrame(rows)


def sharpness_rises(table: pd.DataFrame) -> bool | None:
    """The verdict on "sharpness rises with the requested size", by the project's rule on the paired differences
    of ``sharpness_by_size``: the largest size's difference from the smallest lies above 0 and no step between
    neighbouring sizes lies below 0 (True); the ends' difference lies below 0 (False); it straddles 0 (None:
    undecided). A table without paired columns (images not drawn with shared noise) compares the ends' own
    intervals instead."""
    table = table.sort_values("original_size")
    first, last = table.iloc[0], table.iloc[-1]
    if "difference_ci_low" not in table:
        if first["sharpness_ci_high"] < last["sharpness_ci_low"]:
            return bool(table["sharpness"].is_monotonic_increasing)
        return False if last["sharpness_ci_high"] < first["sharpness_ci_low"] else None
    if last["difference_ci_low"] > 0:
        return bool((table["step_ci_high"].iloc[1:] >= 0).all())
    return False if last["difference_ci_high"] < 0 else None


def sharpness_by_original_size(images: Tensor, original_sides: Sequence[int], edges: Sequence[int],
                               num_resamples: int = 1000, seed: int = 0,
                               measure: Measure = image_sharpness) -> pd.DataFrame:
    """Sharpness (default ``image_sharpness``; ``latent_sharpness`` for their latents) of real training images
    grouped by the shorter side of the original they were resized from: one row per bin ``[edges[i],
    edges[i + 1])`` with its mean, bootstrap 95 % interval and count. Shows what size conditioning can learn at
    all: upscaled small originals are blurred, large ones are not."""
    energy = measure(images).detach().cpu().numpy()
    sides = torch.as_tensor(list(original_sides)).numpy()
    rows = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = energy[(sides >= low) & (sides < high)]
        if len(in_bin) == 0:
            raise ValueError(f"no image has an original side in [{low}, {high}); pass more images or wider bins.")
        interval = mean_interval(in_bin, num_resamples=num_resamples, seed=seed)
        rows.append({"original_side": f"{low}-{high - 1}", "sharpness": interval.estimate,
                     "sharpness_ci_low": interval.low, "sharpness_ci_high": interval.high, "num_samples": len(in_bin)})
    return pd.DataFrame(rows)


__all__ = ["DETAIL_REFERENCE", "LAPLACIAN", "Measure", "SizedDraw", "detail_score", "image_sharpness",
           "laplacian_energy", "latent_sharpness", "sharpness_by_original_size", "sharpness_by_size",
           "sharpness_rises"]
