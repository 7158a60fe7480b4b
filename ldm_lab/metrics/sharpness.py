"""Sharpness: how much fine detail an image holds, to measure SDXL's size conditioning (SDXL §2.2).

SDXL conditions on the size an image had before it was resized to the training size. Small originals were
upscaled, so they are blurry; asked for a small ``original_size``, the model should draw blurry images, and
sharper ones as the requested size grows. We measure detail as the energy of the discrete Laplacian of the
luma, the classic focus measure (Pech-Pacheco et al. 2000, "variance of the Laplacian"): an edge blurred over
k pixels has a Laplacian about k^2 times weaker, while flat regions and smooth gradients score near 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ldm_lab.metrics.bootstrap import mean_interval
from ldm_lab.metrics.images import LUMA_WEIGHTS, check_uint8, to_uint8

# The 3x3 discrete Laplacian: the sum of second differences along rows and columns.
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian_energy(images: Tensor) -> Tensor:
    """Mean squared Laplacian of the luma (pixels in [0, 1]), per image: uint8 ``[N, C, H, W]`` -> ``[N]``.
    The border row and column, where the kernel would reach outside the image, are left out."""
    pixels = check_uint8(images).float() / 255
    if pixels.shape[1] == 3:
        pixels = torch.einsum("nchw,c->nhw", pixels, pixels.new_tensor(LUMA_WEIGHTS)).unsqueeze(1)
    response = F.conv2d(pixels, LAPLACIAN.to(pixels).view(1, 1, 3, 3))  # [N, 1, H-2, W-2]
    return response.square().mean(dim=(1, 2, 3))


SizedDraw = Callable[[tuple[int, int]], Tensor]  # requested original (height, width) -> images in [-1, 1]


def sharpness_by_size(draw: SizedDraw, sizes: Sequence[int], num_resamples: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """Laplacian energy (x 1000, for readable numbers) of the images ``draw`` makes for each requested square
    original size: one row per size with its mean, bootstrap 95 % interval and sample count. With the same noise
    for every size, only the size condition differs between rows."""
    rows = []
    for side in sizes:
        energy = 1000 * laplacian_energy(to_uint8(draw((side, side)))).numpy()
        interval = mean_interval(energy, num_resamples=num_resamples, seed=seed)
        rows.append({"original_size": side, "sharpness": interval.estimate, "sharpness_ci_low": interval.low,
                     "sharpness_ci_high": interval.high, "num_samples": len(energy)})
    return pd.DataFrame(rows)


def sharpness_rises(table: pd.DataFrame) -> bool | None:
    """The verdict on "sharpness rises with the requested size": the mean rises at every step and the smallest
    size's interval lies below the largest's (True); the ends' intervals are apart the other way, or the means
    do not rise (False); the ends' intervals overlap (None: undecided)."""
    table = table.sort_values("original_size")
    first, last = table.iloc[0], table.iloc[-1]
    if first["sharpness_ci_high"] >= last["sharpness_ci_low"] and first["sharpness_ci_low"] <= last["sharpness_ci_high"]:
        return None
    return bool(table["sharpness"].is_monotonic_increasing and first["sharpness_ci_high"] < last["sharpness_ci_low"])


def sharpness_by_original_size(images: Tensor, original_sides: Sequence[int], edges: Sequence[int],
                               num_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Laplacian energy (x 1000) of real training images grouped by the shorter side of the original they were
    resized from: one row per bin ``[edges[i], edges[i + 1])`` with its mean, bootstrap 95 % interval and count.
    Shows what size conditioning can learn at all: upscaled small originals are blurred, large ones are not."""
    energy = 1000 * laplacian_energy(images).numpy()
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


# The lab refiner's stand-in for SDXL's aesthetic score (§2.5 conditions the refiner on a LAION-aesthetics score;
# no such predictor exists here): a score of measurable detail, 5 + log2(Laplacian energy / 5e-4), clipped to
# [0, 10]. On shapes_multiscale the median small original (shorter side < 24 px, upscaled, blurred) scores about 2.7
# and the median large one (>= 64 px) about 5.7, so SDXL's sampling values 6.0 and, for the unconditional branch,
# 2.5 ask for a sharp and a blurred image as they do in SDXL.
DETAIL_REFERENCE = 5e-4   # the Laplacian energy that scores 5


def detail_score(images: Tensor) -> Tensor:
    """uint8 ``[N, C, H, W]`` -> ``[N]`` detail scores in [0, 10]: one point per doubling of Laplacian energy."""
    energy = laplacian_energy(images).clamp(min=1e-12)
    return (5 + torch.log2(energy / DETAIL_REFERENCE)).clamp(0, 10)
