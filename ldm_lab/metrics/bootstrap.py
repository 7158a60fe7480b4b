"""Bootstrap confidence intervals for any metric (Efron & Tibshirani 1993).

A metric computed from N samples is itself a random number; report it with an interval. We resample the samples
with replacement, recompute the metric, and read the interval off the spread. The *bias-corrected* percentile
interval (Efron 1987; Efron & Tibshirani §14.3) centres it on the estimate even when resampling shifts the metric,
as it does for FID: duplicates in a resample shrink its effective size, and FID is biased upward at small N.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap confidence interval."""
    estimate: float
    low: float
    high: float
    confidence: float    # e.g. 0.95
    num_resamples: int

    @property
    def width(self) -> float:
        return self.high - self.low

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}] ({self.confidence:.0%} CI)"


def bias_corrected_quantiles(draws: np.ndarray, estimate: float, confidence: float) -> tuple[float, float]:
    """The BC percentile levels: shift the nominal (a/2, 1 - a/2) by z0 = Phi^-1(share of draws below the
    estimate), i.e. Phi(2 z0 +- z_{a/2}). With z0 = 0 this is the plain percentile interval."""
    normal = NormalDist()
    half = 0.5 / len(draws)  # keep z0 finite when every draw lies on one side
    below = np.clip(np.mean(draws < estimate) + 0.5 * np.mean(draws == estimate), half, 1 - half)
    z0, z_alpha = normal.inv_cdf(float(below)), normal.inv_cdf((1 - confidence) / 2)
    return normal.cdf(2 * z0 + z_alpha), normal.cdf(2 * z0 - z_alpha)


def bootstrap_interval(statistic: Callable[..., float], sizes: Sequence[int], *, num_resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> Interval:
    """Interval of ``statistic(*indices)``, one index array per sample set of the given ``sizes`` (FID has two:
    real and generated; a mean has one). Each resample draws every set's indices with replacement."""
    if not 0 < confidence < 1 or num_resamples < 2 or min(sizes) < 2:
        raise ValueError(f"need 0 < confidence < 1 (got {confidence}), num_resamples >= 2 (got {num_resamples}) "
                         f"and at least 2 samples per set (got sizes {tuple(sizes)})")
    rng = np.random.default_rng(seed)
    estimate = float(statistic(*(np.arange(n) for n in sizes)))
    draws = np.array([statistic(*(rng.integers(0, n, n) for n in sizes)) for _ in range(num_resamples)], float)
    low, high = np.quantile(draws, bias_corrected_quantiles(draws, estimate, confidence))
    return Interval(estimate, float(low), float(high), confidence, num_resamples)


def mean_interval(values: Sequence[float] | np.ndarray, **kwargs) -> Interval:
    """Interval of the mean of per-sample values (CLIP scores, PSNRs, ...); ``kwargs`` as ``bootstrap_interval``."""
    values = np.asarray(values, dtype=float)
    return bootstrap_interval(lambda index: values[index].mean(), (len(values),), **kwargs)


def recentred_interval(statistic: Callable[[np.ndarray, np.ndarray], float], sizes: tuple[int, int],
                       num_resamples: int, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Bootstrap interval of a two-set statistic (FID, KID): the resamples' percentile spread around their
    median, placed around the estimate.

    Resampling with replacement repeats images, and repeats shift FID and KID upward (fewer distinct images
    per set; in KID's within-set mean a repeat is a pair at distance 0); at 354 against 354 lab-clip features
    FID's shift is larger than its whole spread, so
    every resample lies above the estimate and no percentile interval, bias-corrected or not, contains it.
    The spread is what the interval is for; the shift is an artefact of the repeats and is dropped."""
    if num_resamples < 2 or min(sizes) < 2:
        raise ValueError(f"need num_resamples >= 2 (got {num_resamples}) and at least 2 samples per set (got "
                         f"sizes {sizes}).")
    rng = np.random.default_rng(seed)
    estimate = float(statistic(*(np.arange(n) for n in sizes)))
    draws = np.array([statistic(*(rng.integers(0, n, n) for n in sizes)) for _ in range(num_resamples)], float)
    low, median, high = np.quantile(draws, [(1 - confidence) / 2, 0.5, (1 + confidence) / 2])
    return Interval(estimate, estimate - float(median - low), estimate + float(high - median), confidence,
                    num_resamples)
