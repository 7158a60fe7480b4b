"""Reference points that give a metric its scale: what *real* images score, measured the same way as generated
ones, at the same N and in the same feature space.

* ``real_vs_real_point``: FID and CLIP score of real images from another split against the reference set: the
  floor a perfect generator would reach at this N (FID is biased upward at small N, so the floor is not 0).
* ``clip_score_scale``: CLIP score (``100 * max(cos, 0)``) of real images with their own captions and with
  shuffled captions: the two ends of the scale a generated set is read against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from torch import Tensor

from ldm_lab.metrics.adherence import guidance_point
from ldm_lab.metrics.bootstrap import mean_interval
from ldm_lab.metrics.clip_score import DualEncoder, clip_scores
from ldm_lab.metrics.features import extract_features
from ldm_lab.metrics.images import check_uint8


def real_vs_real_point(images: Tensor, captions: Sequence[str], reference: Tensor, encoder: DualEncoder, *,
                       feature_space: str = "lab-clip", num_resamples: int = 200, seed: int = 0) -> dict:
    """``guidance_point`` of real uint8 ``images`` (with their ``captions``) against the uint8 ``reference``
    set: a row shaped like ``guidance_sweep``'s, to set beside generated sets of the same size."""
    reference_features = extract_features(check_uint8(reference), feature_space)
    return guidance_point(check_uint8(images), captions, reference_features, encoder, feature_space,
                          num_resamples, seed)


def derangement_shift(count: int) -> int:
    """How far ``clip_score_scale`` rolls the captions: half the list, so that no image keeps its own caption and
    neighbours in a sorted dataset (e.g. "red heart", "orange heart") are not paired either."""
    if count < 2:
        raise ValueError(f"shuffled pairs need at least 2 images, got {count}")
    return count // 2


def clip_score_scale(images: Tensor, captions: Sequence[str], encoder: DualEncoder, *, num_resamples: int = 200,
                     seed: int = 0) -> pd.DataFrame:
    """CLIP score of real uint8 ``images`` with their own ``captions`` ("matching pairs") and with another
    image's caption ("shuffled pairs"): mean with bootstrap 95 % interval, and the share of pairs the clamp at 0
    holds (cosine <= 0, scored 0)."""
    shift = derangement_shift(len(captions))
    shuffled = list(captions[shift:]) + list(captions[:shift])
    rows = []
    for pairs, texts in (("matching pairs", list(captions)), ("shuffled pairs", shuffled)):
        scores = clip_scores(images, texts, encoder).numpy()
        interval = mean_interval(scores, num_resamples=num_resamples, seed=seed)
        rows.append({"pairs": pairs, "clip_score": interval.estimate, "clip_score_ci_low": interval.low,
                     "clip_score_ci_high": interval.high, "share_clamped_to_0": float(np.mean(scores == 0.0)),
                     "num_pairs": len(scores), "clip_encoder": encoder.name})
    return pd.DataFrame(rows)


__all__ = ["clip_score_scale", "derangement_shift", "real_vs_real_point"]
