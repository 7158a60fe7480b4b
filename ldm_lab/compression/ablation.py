"""Measuring LDM-{1..32} (LDM §4.1): sample quality against training steps (Fig. 6) and throughput (Tab. 6).

    batch = validation_batch(300)                                   # real images and their categories
    real = extract_features(to_uint8(batch["image"]), "lab-clip")
    quality = sample_quality(real, extract_features(generate_images(model, batch), "lab-clip"))
    row = ablation_row(f=8, step=3000, quality=quality, throughput=measure_throughput(8))

Generated images use the validation items' own categories, so both sets have the same class mix, and no
guidance, as Fig. 6. FID comes with a bootstrap interval; compare rows only at equal ``num_samples``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ldm_lab.bench import BenchRow, bench_target
from ldm_lab.compression.rows import Measured
from ldm_lab.data import build_dataset, collate, held_out_sample, split_batch
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.metrics import (Interval, extract_features, fid_from_features, kid_from_features,
                             recentred_interval, to_uint8)
from ldm_lab.models import LatentDiffusion
from ldm_lab.nn.autoencoder import Regularizer
from ldm_lab.presets import get_preset, parameter_counts
from ldm_lab.presets.compression import check_factor
from ldm_lab.tasks.diffusion import generate_like
from ldm_lab.tasks.targets.compression import ablation_target, first_stage_target

FIG6_SAMPLING = SamplingSettings(seed=0)  # DPM-Solver++(2M), 20 steps, no guidance (Fig. 6 used none), seed 0


def validation_batch(num_samples: int, dataset: str = "emoji", resolution: tuple[int, int] = (64, 64),
                     seed: int = 0) -> dict:
    """The first ``num_samples`` held-out items in a fixed shuffled order (as ``ldm-lab eval``), collated."""
    return held_out_sample(dataset, resolution, num_samples, seed)


def ablation_models(factors: Sequence[int], resolution: int = 64) -> pd.DataFrame:
    """LDM-f for each of ``factors``, one row each: the latent it denoises, its U-Net's levels, width and
    parameters, and its frozen first stage (LDM §4.1 keeps the U-Nets' parameter counts comparable: a smaller
    latent needs fewer levels, and width makes up for depth)."""
    rows = []
    for f in factors:
        preset, counts = get_preset(ablation_target(check_factor(f))), parameter_counts(ablation_target(f))
        side = resolution // f
        rows.append({"model": f"LDM-{f}", "latent (h x w x c)": f"{side}x{side}x{preset.unet.in_channels}",
                     "U-Net levels": len(preset.unet.channel_mult), "U-Net width": preset.unet.model_channels,
                     "U-Net parameters": counts["unet"],
                     "first stage": "none (pixels)" if f == 1 else first_stage_target(Regularizer.VQ, f),
                     "first-stage parameters (frozen)": counts.get("vae", 0)})
    return pd.DataFrame(rows).set_index("model")


def training_sample(num_samples: int, dataset: str = "emoji", resolution: tuple[int, int] = (64, 64),
                    seed: int = 0) -> dict:
    """``num_samples`` training-split items in a fixed shuffled order, collated: another set of real images, the
    real-vs-real reference every FID table here carries (a perfect generator would score about what they do)."""
    data = build_dataset(dataset, "train", resolution)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num_samples]
    return collate([data[int(i)] for i in order])


def cycle_batch(batch: dict, num_samples: int) -> dict:
    """``num_samples`` items made by going round ``batch`` again and again: more generated images than the
    held-out split has, with its class mix."""
    order = [i % len(batch["image"]) for i in range(num_samples)]
    return {key: value[order] if isinstance(value, Tensor) else [value[i] for i in order]
            for key, value in batch.items()}


@torch.no_grad()
def generate_images(model: LatentDiffusion, batch: dict, settings: SamplingSettings = FIG6_SAMPLING,
                    batch_size: int = 64, progress: bool = True) -> Tensor:
    """One uint8 image ``[N, C, H, W]`` per item of ``batch``, drawn with the item's category (noise seeded by
    ``settings.seed``, so reruns and other devices draw the same images)."""
    generator = settings.generator()
    chunks = [generate_like(model.eval(), part, settings=settings, generator=generator)
              for part in tqdm(list(split_batch(batch, batch_size)), desc="generate", disable=not progress)]
    return to_uint8(torch.cat([chunk.cpu() for chunk in chunks]))


@dataclass(frozen=True)
class SampleQuality:
    """FID (with its bootstrap interval) and KID of generated features against real ones."""

    fid: Interval
    kid: float            # mean over subsets (unbiased: usable at small N)
    kid_std: float        # spread over subsets
    num_samples: int      # generated images (as many as real ones)


def sample_quality(real_features: Tensor, generated_features: Tensor, num_resamples: int = 200,
                   kid_subset_size: int | None = None, seed: int = 0) -> SampleQuality:
    """FID with a re-centred bootstrap interval (``ldm_lab.metrics.recentred_interval``: resampling with
    replacement repeats images and shifts every resampled FID upwards, so a percentile interval, bias-corrected
    or not, can miss the estimate altogether; the re-centred one keeps the resamples' spread around the
    estimate), and KID over random subsets (default: half the samples, so the subsets differ), from feature sets
    ``[N, d]``. Extract features once (``ldm_lab.metrics.extract_features``): the real set is shared by every
    model and checkpoint."""
    fid = recentred_interval(lambda r, g: fid_from_features(real_features[r], generated_features[g]),
                             (len(real_features), len(generated_features)), num_resamples, seed=seed)
    subset = kid_subset_size or max(2, min(len(real_features), len(generated_features)) // 2)
    kid, kid_std = kid_from_features(real_features, generated_features, subset_size=subset)
    return SampleQuality(fid, kid, kid_std, len(generated_features))


def real_vs_real(real_features: Tensor, num_resamples: int = 200, seed: int = 0, feature_space: str = "lab-clip",
                 device: str | torch.device | None = None) -> tuple[Tensor, SampleQuality]:
    """The calibration row of an FID/KID table: as many training-split images as ``real_features`` has rows,
    scored against them exactly as a generated set (same N, same feature space, same interval). Returns the
    uint8 images and their ``SampleQuality``: the FID that "as good as real data" reads at this N."""
    images = to_uint8(training_sample(len(real_features), seed=seed)["image"])
    features = extract_features(images, feature_space, device)
    return images, sample_quality(real_features, features, num_resamples, seed=seed)


def measure_throughput(f: int, device: str | torch.device | None = None, batch_size: int = 32,
                       settings: SamplingSettings = FIG6_SAMPLING, repeats: int = 3) -> BenchRow:
    """Train and sample samples/s of LDM-``f`` (``ldm_lab.bench.bench_target``: randomly initialised weights
    cost as much as trained ones), LDM Tab. 6's two speed columns."""
    return bench_target(ablation_target(check_factor(f)), device=device, batch_size=batch_size,
                        sampling=settings, repeats=repeats)


@dataclass(frozen=True, kw_only=True)
class AblationRow(Measured):
    """One line of ``data/results/compression_ablation.csv``: LDM-f at one checkpoint (a point of Fig. 6), with
    its throughput (Tab. 6; NaN when not measured)."""

    f: int
    step: int                       # training steps of the checkpoint
    fid: float
    fid_ci_low: float
    fid_ci_high: float
    fid_confidence: float           # of the interval, e.g. 0.95
    kid: float
    kid_std: float
    settings: str                   # how the images were drawn
    train_samples_per_s: float = math.nan
    sample_samples_per_s: float = math.nan
    throughput_batch_size: int = 0  # of the throughput measurement (0: not measured)
    throughput_device: str = ""     # where throughput was measured (may differ from where FID was)


def ablation_row(f: int, step: int, quality: SampleQuality, settings: SamplingSettings = FIG6_SAMPLING,
                 throughput: BenchRow | None = None, feature_space: str = "lab-clip",
                 device: str | torch.device | None = None) -> AblationRow:
    """The row of LDM-``f`` at ``step``; ``throughput`` from ``measure_throughput`` (the same for every step)."""
    speed = {} if throughput is None else {
        "train_samples_per_s": throughput.train_samples_per_s, "sample_samples_per_s": throughput.sample_samples_per_s,
        "throughput_batch_size": throughput.batch_size, "throughput_device": throughput.device}
    where = {} if device is None else {"device": str(device)}
    return AblationRow(f=check_factor(f), step=step, fid=quality.fid.estimate, fid_ci_low=quality.fid.low,
                       fid_ci_high=quality.fid.high, fid_confidence=quality.fid.confidence, kid=quality.kid,
                       kid_std=quality.kid_std, settings=settings.describe(), feature_space=feature_space,
                       num_samples=quality.num_samples, **speed, **where)
