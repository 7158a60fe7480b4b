"""Sample quality against sampling time (LDM Fig. 7): each LDM-f draws the same images with DDIM at several step
counts, and every point is (seconds per image on this machine, FID with its interval).

    rows = tradeoff_rows(model, f=8, train_step=1500, real_features=real, batch=cycle_batch(held_out, 128))

The paper samples its ImageNet models with DDIM at {10, 20, 50, 100, 200} steps and plots log FID against
throughput: at small f the latent is large, so every step costs more, and at large f quality saturates early.
Time is wall time for the whole draw (start noise, every U-Net call, decoding), divided by the images drawn. A time
is only as good as the machine was quiet: ``sampling_times`` re-times the same draws on a small batch, e.g. where
the quality was recorded beside training jobs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import pandas as pd
import torch
from torch import Tensor

from ldm_lab.compression.ablation import FIG6_SAMPLING, generate_images, sample_quality
from ldm_lab.compression.rows import Measured
from ldm_lab.device import model_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.metrics import extract_features
from ldm_lab.models import LatentDiffusion

FIG7_SAMPLER_STEPS: tuple[int, ...] = (10, 20, 50, 100, 200)  # LDM Fig. 7's DDIM step counts
FIG7_SAMPLING = replace(FIG6_SAMPLING, sampler="ddim")         # DDIM (eta 0), no guidance, seed 0
COMPRESSION_SAMPLING_TABLE = "compression_sampling"            # data/results/compression_sampling.csv


@dataclass(frozen=True, kw_only=True)
class TradeoffRow(Measured):
    """One point of Fig. 7: LDM-f drawing ``num_samples`` images with ``sampler_steps`` DDIM steps."""

    f: int
    step: int                   # training steps of the model
    sampler_steps: int
    seconds_per_image: float    # wall time of the whole draw / images, at ``batch_size`` and ``threads``
    fid: float
    fid_ci_low: float
    fid_ci_high: float
    fid_confidence: float
    kid: float
    kid_std: float
    settings: str
    batch_size: int
    threads: int                # torch's intra-op threads while timing


def tradeoff_rows(model: LatentDiffusion, f: int, train_step: int, real_features: Tensor, batch: dict,
                  sampler_steps: Sequence[int] = FIG7_SAMPLER_STEPS, settings: SamplingSettings = FIG7_SAMPLING,
                  batch_size: int = 64, num_resamples: int = 200, feature_space: str = "lab-clip") -> list[TradeoffRow]:
    """A row per entry of ``sampler_steps``: ``model`` draws one image per item of ``batch`` (its categories;
    the same start noise at every step count), timed, then scored against ``real_features``."""
    device, rows = model_device(model), []
    for steps in sampler_steps:
        drawing = replace(settings, steps=steps)
        start = time.perf_counter()
        images = generate_images(model, batch, drawing, batch_size=batch_size, progress=False)
        seconds = (time.perf_counter() - start) / len(images)
        quality = sample_quality(real_features, extract_features(images, feature_space, device), num_resamples)
        rows.append(TradeoffRow(
            f=f, step=train_step, sampler_steps=steps, seconds_per_image=seconds, fid=quality.fid.estimate,
            fid_ci_low=quality.fid.low, fid_ci_high=quality.fid.high, fid_confidence=quality.fid.confidence,
            kid=quality.kid, kid_std=quality.kid_std, settings=drawing.describe(), batch_size=batch_size,
            threads=torch.get_num_threads(), feature_space=feature_space, num_samples=quality.num_samples,
            device=str(device)))
    return rows


def sampling_times(models: Mapping[int, LatentDiffusion], batch: dict,
                   sampler_steps: Sequence[int] = FIG7_SAMPLER_STEPS, settings: SamplingSettings = FIG7_SAMPLING,
                   repeats: int = 1) -> pd.DataFrame:
    """Seconds per image of each LDM-f in ``models`` ({f: model}) drawing ``batch`` (its categories) at each of
    ``sampler_steps``, the fastest of ``repeats`` draws (a busy machine only ever slows a draw down), after one
    warm-up draw per model: columns f, sampler_steps, seconds_per_image, batch_size, threads."""
    rows = []
    for f, model in models.items():
        generate_images(model, batch, replace(settings, steps=1), batch_size=len(batch["label"]), progress=False)
        for steps in sampler_steps:
            drawing, best = replace(settings, steps=steps), float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                generate_images(model, batch, drawing, batch_size=len(batch["label"]), progress=False)
                best = min(best, time.perf_counter() - start)
            rows.append({"f": f, "sampler_steps": steps, "seconds_per_image": best / len(batch["label"]),
                         "batch_size": len(batch["label"]), "threads": torch.get_num_threads()})
    return pd.DataFrame(rows)


def retimed(recorded: pd.DataFrame, times: pd.DataFrame) -> pd.DataFrame:
    """Recorded Fig. 7 rows (``TradeoffRow`` columns) with their timing replaced by ``sampling_times``' for the same
    f and step count (rows not re-timed are dropped): quality as recorded, time as measured now."""
    timing = ["seconds_per_image", "batch_size", "threads"]
    return recorded.drop(columns=timing).merge(times[["f", "sampler_steps", *timing]], on=["f", "sampler_steps"])
