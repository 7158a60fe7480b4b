"""Notebook 06's measurements as functions: draw Shapes images under SDXL's micro-conditions (original size, crop,
target size and aspect bucket; §2.2-2.3), measure what the frame does to the objects, and how sharp a requested
original size draws.

    draw = shapes_draw(load_run("runs/lab-sdxl-buckets").model, geometry_prompts(64), SamplingSettings(seed=0))
    table = geometry_table({"buckets": draw}, bucket_cases())          # cut-off and stretch per bucket
    table = geometry_table({"crop cond.": draw_a, "no crop cond.": draw_b}, crop_cases([(0, 0), (0, 16)]))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ldm_lab.data.buckets import LAB_BUCKETS, Size
from ldm_lab.data.shapes import COLOURS, SIZES
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.metrics.images import to_uint8
from ldm_lab.metrics.sharpness import latent_sharpness, sharpness_by_size
from ldm_lab.metrics.shapes_geometry import geometry_row
from ldm_lab.models import LatentDiffusion
from ldm_lab.tasks.diffusion import generate

Case = Mapping[str, Any]                # keywords of a draw: size, original_size, crop_top_left
Draw = Callable[..., Tensor]            # draw(**case) -> images [N, 3, H, W] in [-1, 1]
GEOMETRY_KINDS = ("circle", "square")   # regular shapes, whose stretch is 1 at any rotation


def geometry_prompts(num: int, kinds: Sequence[str] = GEOMETRY_KINDS, seed: int = 0) -> list[str]:
    """``num`` one-object prompts in Shapes' caption form ("a large red circle") of ``kinds``, sizes and colours
    drawn at random: the objects whose distortion ``ldm_lab.metrics.shapes_geometry`` measures."""
    rng = np.random.default_rng(seed)
    return [f"a {rng.choice(list(SIZES))} {rng.choice(list(COLOURS))} {rng.choice(list(kinds))}" for _ in range(num)]


def shapes_draw(model: LatentDiffusion, prompts: Sequence[str], settings: SamplingSettings = SamplingSettings()
                ) -> Draw:
    """A draw of one image per prompt, with the same noise every call (``settings.seed``), taking the image
    ``size`` (a multi-aspect model's bucket) and the micro-conditions ``original_size`` / ``crop_top_left``;
    left out, they are SDXL's sampling defaults (the image size, and (0, 0))."""
    def draw(size: Size | None = None, original_size: Size | None = None,
             crop_top_left: tuple[int, int] | None = None) -> Tensor:
        conditions: dict[str, Any] = {"caption": list(prompts)}
        for key, value in (("original_size", original_size), ("crop_top_left", crop_top_left)):
            if value is not None:
                conditions[key] = torch.tensor([tuple(value)] * len(prompts))
        return generate(model, conditions=conditions, settings=settings, size=size)

    return draw


def original_size_sweep(model: LatentDiffusion, prompts: Sequence[str], sides: Sequence[int],
                        settings: SamplingSettings, num_resamples: int = 1000, seed: int = 0
                        ) -> tuple[pd.DataFrame, pd.DataFrame, dict[int, Tensor]]:
    """SDXL Fig. 4 measured: one image per prompt at each requested square original size, the same noise at every
    size (``settings.seed``), and the sharpness of what a viewer sees (decoded images) and of what the U-Net drew
    (latents), each with paired differences (``ldm_lab.metrics.sharpness.sharpness_by_size``). Returns the two
    tables and the images per side."""
    latents: dict[int, Tensor] = {}
    images: dict[int, Tensor] = {}

    def draw(original: Size) -> Tensor:
        conditions = {"caption": list(prompts), "original_size": torch.tensor([original] * len(prompts))}
        latents[original[0]] = generate(model, conditions=conditions, settings=settings, decode=False)
        images[original[0]] = model.decode(latents[original[0]]).clamp(-1, 1).cpu()
        return images[original[0]]

    measure = dict(num_resamples=num_resamples, seed=seed)
    by_image = sharpness_by_size(draw, sides, **measure)
    by_latent = sharpness_by_size(lambda size: latents[size[0]], sides, measure=latent_sharpness, **measure)
    return by_image, by_latent, images


def bucket_cases(buckets: Sequence[Size] = LAB_BUCKETS) -> dict[str, dict[str, Size]]:
    """One case per aspect bucket: ``{"48x80": {"size": (48, 80)}, ...}``."""
    return {f"{h}x{w}": {"size": (h, w)} for h, w in buckets}


def crop_cases(crops: Sequence[tuple[int, int]]) -> dict[str, dict[str, tuple[int, int]]]:
    """One case per requested crop (top, left): ``{"crop (0, 0)": {"crop_top_left": (0, 0)}, ...}``."""
    return {f"crop ({top}, {left})": {"crop_top_left": (top, left)} for top, left in crops}


def geometry_table(draws: Mapping[str, Draw], cases: Mapping[str, Case], num_resamples: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """One row per (model, case): the fraction of objects cut by the frame and the objects' log2 stretch, each
    with its bootstrap interval over images (``ldm_lab.metrics.shapes_geometry.geometry_row``)."""
    rows = []
    for model_name, draw in draws.items():
        for case_name, case in cases.items():
            images = to_uint8(draw(**case))
            rows.append({"model": model_name, "case": case_name,
                         **geometry_row(images, num_resamples=num_resamples, seed=seed)})
    return pd.DataFrame(rows)
