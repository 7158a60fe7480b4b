"""Bootstrap intervals: they contain the estimate, shrink like 1/sqrt(n), and work for FID's bias."""

import numpy as np
import pytest
import torch

from ldm_lab.metrics.bootstrap import bootstrap_interval, mean_interval
from ldm_lab.metrics.fidelity import fid_from_features, fid_interval


def test_mean_interval_covers_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(3.0, 1.0, 100), rng.normal(3.0, 1.0, 1600)
    intervals = [mean_interval(values, num_resamples=400) for values in (small, large)]
    for values, interval in zip((small, large), intervals):
        assert interval.estimate == pytest.approx(values.mean())
        assert interval.low < interval.estimate < interval.high
    # 16x the samples: about 1/4 the width (standard error ~ 1/sqrt(n))
    assert 0.15 < intervals[1].width / intervals[0].width < 0.4
    assert intervals[1].low < 3.0 < intervals[1].high


def test_interval_coverage_is_near_nominal():
    rng = np.random.default_rng(1)
    hits = 0
    for trial in range(60):
        interval = mean_interval(rng.normal(0.0, 1.0, 50), num_resamples=200, confidence=0.9, seed=trial)
        hits += interval.low < 0.0 < interval.high
    assert 0.75 <= hits / 60 <= 1.0  # nominal 0.9; 60 trials give a binomial spread of about 0.04


def test_fid_interval_contains_the_biased_estimate():
    # Resampling with replacement duplicates samples and inflates FID; the bias correction keeps the
    # interval around the estimate instead of above it.
    torch.manual_seed(0)
    real, generated = torch.randn(300, 8), torch.randn(300, 8) + 0.3
    interval = fid_interval(real, generated, num_resamples=100)
    assert interval.estimate == pytest.approx(fid_from_features(real, generated))
    assert interval.low < interval.estimate < interval.high


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval(lambda i: 0.0, (10,), confidence=1.5)
