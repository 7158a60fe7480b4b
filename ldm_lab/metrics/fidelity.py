"""FID, KID and precision/recall, computed by torch-fidelity in a named feature space.

* FID (Heusel et al. 2017): ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` between Gaussians fitted to
  the two feature sets. Biased upward at small N: compare FIDs only at equal N.
* KID (Binkowski et al. 2018, §3): the unbiased MMD^2 with the kernel ``(x.y / d + 1)^3``, averaged over random
  subsets; unbiased, so usable at small N.
* Precision / recall (Kynkaenniemi et al. 2019): the share of generated samples inside the real samples' k-NN
  balls (fidelity), and of real samples inside the generated ones' (coverage).

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
                     device: torch.device | str | None = None, batch_size: int = 128) -> FidelityResult:
    """All three metrics for uint8 image sets ``[N, C, H, W]``, by ``torch_fidelity.calculate_metrics``.

    KID subsets are capped at the smaller set's size. torch-fidelity runs on CUDA or the CPU only, so on Apple
    ``mps`` this computes on the CPU."""
    register_feature_extractors()
    space = check_feature_space(feature_space)
    as_input = to_rgb if space.name == "inception-v3-compat" else check_uint8
    raw = torch_fidelity.calculate_metrics(
        input1=UInt8Images(as_input(generated)), input2=UInt8Images(as_input(real)),
        feature_extractor=space.name, feature_layer_fid=space.layer, feature_layer_kid=space.layer,
        feature_layer_prc=space.layer, fid=True, kid=True, prc=True,
        kid_subset_size=min(kid_subset_size, len(real), len(generated)), kid_subsets=kid_subsets,
        prc_neighborhood=neighborhood, cuda=resolve_device(device).type == "cuda", batch_size=batch_size,
        cache=False, save_cpu_ram=True, verbose=False, **extractor_kwargs(space.name))
    return FidelityResult(
        feature_space=space.name, num_real=len(real), num_generated=len(generated),
        fid=raw["frechet_inception_distance"], kid=raw["kernel_inception_distance_mean"],
        kid_std=raw["kernel_inception_distance_std"], precision=raw["precision"], recall=raw["recall"])


def fid_from_features(real: Tensor, generated: Tensor) -> float:
    """FID between two feature sets ``[N, d]`` (torch-fidelity's formula)."""
    statistics = [fid_features_to_statistics(features.double().cpu()) for features in (real, generated)]
    return fid_statistics_to_metric(*statistics, verbose=False)["frechet_inception_distance"]


def kid_from_features(real: Tensor, generated: Tensor, subset_size: int = 1000, subsets: int = 100,
                      seed: int = 2020) -> tuple[float, float]:
    """KID mean and standard deviation over ``subsets`` random subsets (capped at the smaller set's size).
    Subsets are drawn as ``calculate_metrics`` draws them (generated first), so the two agree."""
    result = kid_features_to_metric(generated.double().cpu(), real.double().cpu(), kid_subsets=subsets,
                                    kid_subset_size=min(subset_size, len(real), len(generated)), rng_seed=seed,
                                    verbose=False)
    return result["kernel_inception_distance_mean"], result["kernel_inception_distance_std"]


def precision_recall_from_features(real: Tensor, generated: Tensor, neighborhood: int = 3) -> tuple[float, float]:
    """Improved precision and recall with ``neighborhood``-NN balls."""
    result = prc_features_to_metric(generated.float().cpu(), real.float().cpu(), prc_neighborhood=neighborhood,
                                    prc_batch_size=10_000, save_cpu_ram=False, verbose=False)
    return result["precision"], result["recall"]


def fid_interval(real: Tensor, generated: Tensor, **kwargs) -> Interval:
    """Bootstrap interval of the FID between two feature sets, resampling both; ``kwargs`` as
    ``bootstrap_interval`` (``num_resamples``, ``confidence``, ``seed``)."""
    return bootstrap_interval(lambda r, g: fid_from_features(real[r], generated[g]), (len(real), len(generated)),
                              **kwargs)
