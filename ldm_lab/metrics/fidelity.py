"""FID, KID and precision/recall, computed by torch-fidelity in a named feature space.

* FID (Heusel et al. 2017): ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` between Gaussians fitted to
  the two feature sets. Biased upward at small N: compare FIDs only at equal N.
* KID (Binkowski et al. 2018, §3): the unbiased MMD^2 with the kernel ``(x.y / d + 1)^3``, averaged over random
  subsets; unbiased, so usable at small N.
* Precision / recall (Kynkaenniemi et al. 2019): the share of generated samples inside the real samples' k-NN
  balls (fidelity), and of real samples inside the generated ones' (coverage).

Too few samples make all three meaningless (n = 4 gives a negative KID and precision = recall = 1), so
``fidelity_metrics`` refuses fewer than ``MIN_SAMPLES`` images per set unless told otherwise, and every function
here refuses sets below the hard floors the formulas need (:func:`check_sample_count`).

``fidelity_metrics`` runs ``torch_fidelity.calculate_metrics`` on uint8 images. The ``*_from_features``
functions apply torch-fidelity's same formulas to features you extracted once (``extract_features``), which is
what bootstrap intervals and sample-size studies need.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_fidelity
from torch import Tensor
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from ldm_lab.device import resolve_device
from ldm_lab.metrics.bootstrap import Interval, bootstrap_interval
from ldm_lab.metrics.features import check_feature_space, extractor_kwargs, register_feature_extractors
from ldm_lab.metrics.images import UInt8Images, check_uint8, to_rgb

MIN_SAMPLES = 50  # default least images per set: below it the scores' sampling noise exceeds most real differences


def sample_floor(neighborhood: int | None) -> int:
    """The fewest samples per set the formulas are defined for, whatever ``min_samples`` says: FID's covariance
    and KID's unbiased MMD^2 (a mean over pairs i != j) need 2; precision/recall's ``neighborhood``-NN radius
    needs k other samples of the set, and with only k + 1 every radius reaches the set's farthest sample, so
    precision and recall are near 1 for any images: k + 2 (``None``: no precision/recall)."""
    return 2 if neighborhood is None else max(2, neighborhood + 2)


def check_sample_count(num_real: int, num_generated: int, *, min_samples: int = MIN_SAMPLES,
                       neighborhood: int | None = 3) -> None:
    """Raise a ValueError when either set has fewer than ``max(min_samples, sample_floor(neighborhood))``."""
    floor = sample_floor(neighborhood)
    needed, count = max(min_samples, floor), min(num_real, num_generated)
    if count < needed:
        raise ValueError(
            f"{num_real} real and {num_generated} generated images are too few: FID/KID/precision-recall need at "
            f"least {needed} per set (default minimum {MIN_SAMPLES}: below it their sampling noise exceeds most "
            f"real differences; hard floor {floor}: {_floor_reason(neighborhood)}). Use more samples "
            f"(--num-samples), or lower the minimum (min_samples= / --min-samples, not below {floor}).")


def _floor_reason(neighborhood: int | None) -> str:
    pairs = "a covariance and KID's mean over pairs need 2 samples"
    if neighborhood is None:
        return pairs
    return f"{pairs}, and a {neighborhood}-NN radius needs {neighborhood} other samples plus one outside it"


def check_finite_images(images: Tensor, what: str, cause: str) -> Tensor:
    """``images`` unchanged if every value is finite; else a ValueError saying how many images hold NaN or inf,
    and ``cause`` (the likely reason and what to change). Without this, NaN turns into black pixels in
    ``to_uint8`` and a diverged sampler is saved and scored as if it had drawn black images."""
    broken = ~torch.isfinite(images.detach().flatten(1)).all(dim=1)
    if broken.any():
        raise ValueError(f"{int(broken.sum())} of {len(images)} {what} hold NaN or infinite values; {cause}")
    return images


@dataclass(frozen=True)
class FidelityResult:
    """FID, KID and precision/recall of a generated set against a real one, in one feature space."""
    feature_space: str
    num_real: int
    num_generated: int
    fid: float
    kid: float           # mean over subsets
    kid_std: float       # spread over subsets (not a confidence interval)
    precision: float
    recall: float


def fidelity_metrics(real: Tensor, generated: Tensor, feature_space: str = "fmnist-classifier", *,
                     kid_subset_size: int = 1000, kid_subsets: int = 100, neighborhood: int = 3,
                     device: torch.device | str | None = None, batch_size: int = 128,
                     min_samples: int = MIN_SAMPLES) -> FidelityResult:
    """All three metrics for uint8 image sets ``[N, C, H, W]``, by ``torch_fidelity.calculate_metrics``.

    Each set needs ``min_samples`` images (see :func:`check_sample_count`). KID subsets are capped at the smaller
    set's size. torch-fidelity runs on CUDA or the CPU only, so on Apple ``mps`` this computes on the CPU."""
    register_feature_extractors()
    space = check_feature_space(feature_space)
    extractor = extractor_kwargs(space.name)  # first: a missing feature network is the first thing to fix
    check_sample_count(len(real), len(generated), min_samples=min_samples, neighborhood=neighborhood)
    as_input = to_rgb if space.name == "inception-v3-compat" else check_uint8
    raw = torch_fidelity.calculate_metrics(
        input1=UInt8Images(as_input(generated)), input2=UInt8Images(as_input(real)),
        feature_extractor=space.name, feature_layer_fid=space.layer, feature_layer_kid=space.layer,
        feature_layer_prc=space.layer, fid=True, kid=True, prc=True,
        kid_subset_size=min(kid_subset_size, len(real), len(generated)), kid_subsets=kid_subsets,
        prc_neighborhood=neighborhood, cuda=resolve_device(device).type == "cuda", batch_size=batch_size,
        cache=False, save_cpu_ram=True, verbose=False, **extractor)
    return FidelityResult(
        feature_space=space.name, num_real=len(real), num_generated=len(generated),
        fid=raw["frechet_inception_distance"], kid=raw["kernel_inception_distance_mean"],
        kid_std=raw["kernel_inception_distance_std"], precision=raw["precision"], recall=raw["recall"])


def fid_from_features(real: Tensor, generated: Tensor) -> float:
    """FID between two feature sets ``[N, d]`` (torch-fidelity's formula)."""
    check_sample_count(len(real), len(generated), min_samples=0, neighborhood=None)
    statistics = [fid_features_to_statistics(features.double().cpu()) for features in (real, generated)]
    return fid_statistics_to_metric(*statistics, verbose=False)["frechet_inception_distance"]


def kid_from_features(real: Tensor, generated: Tensor, subset_size: int = 1000, subsets: int = 100,
                      seed: int = 2020) -> tuple[float, float]:
    """KID mean and standard deviation over ``subsets`` random subsets (capped at the smaller set's size).
    Subsets are drawn as ``calculate_metrics`` draws them (generated first), so the two agree."""
    check_sample_count(len(real), len(generated), min_samples=0, neighborhood=None)
    check_sample_count(subset_size, subset_size, min_samples=0, neighborhood=None)
    result = kid_features_to_metric(generated.double().cpu(), real.double().cpu(), kid_subsets=subsets,
                                    kid_subset_size=min(subset_size, len(real), len(generated)), rng_seed=seed,
                                    verbose=False)
    return result["kernel_inception_distance_mean"], result["kernel_inception_distance_std"]


def precision_recall_from_features(real: Tensor, generated: Tensor, neighborhood: int = 3) -> tuple[float, float]:
    """Improved precision and recall with ``neighborhood``-NN balls."""
    check_sample_count(len(real), len(generated), min_samples=0, neighborhood=neighborhood)
    result = prc_features_to_metric(generated.float().cpu(), real.float().cpu(), prc_neighborhood=neighborhood,
                                    prc_batch_size=10_000, save_cpu_ram=False, verbose=False)
    return result["precision"], result["recall"]


def fid_interval(real: Tensor, generated: Tensor, **kwargs) -> Interval:
    """Bootstrap interval of the FID between two feature sets, resampling both; ``kwargs`` as
    ``bootstrap_interval`` (``num_resamples``, ``confidence``, ``seed``)."""
    return bootstrap_interval(lambda r, g: fid_from_features(real[r], generated[g]), (len(real), len(generated)),
                              **kwargs)
