"""Reconstruction quality of an autoencoder (LDM Tab. 8): PSNR, SSIM, and rFID.

PSNR and SSIM compare each reconstruction with its own original, per image; rFID is the FID between the set of
originals and the set of reconstructions (in a feature space of ``ldm_lab.metrics.features``).
Inputs to PSNR / SSIM are float images ``[B, C, H, W]`` on a known scale: ours are in [-1, 1], so
``data_range = 2``; pass 1 or 255 for other scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ldm_lab.metrics.features import extract_features
from ldm_lab.metrics.fidelity import fid_from_features

SSIM_K1, SSIM_K2 = 0.01, 0.03  # Wang et al. 2004, eq. 7 and 9


def _check_pair(reference: Tensor, reconstruction: Tensor) -> None:
    if reference.shape != reconstruction.shape or reference.dim() != 4:
        raise ValueError(f"compare images of one shape [B, C, H, W]; got {list(reference.shape)} and "
                         f"{list(reconstruction.shape)}")


def psnr(reference: Tensor, reconstruction: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio per image ``[B]`` in dB: ``10 log10(range^2 / MSE)`` (inf if identical)."""
    _check_pair(reference, reconstruction)
    mse = (reference.double() - reconstruction.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).float()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """The normalised 2-D Gaussian weights ``[size, size]`` SSIM averages over (Wang et al. 2004, §III-C)."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    line = torch.exp(-offsets**2 / (2 * sigma**2))
    return torch.outer(line, line) / line.sum() ** 2


def ssim_map(reference: Tensor, reconstruction: Tensor, data_range: float = 2.0, window_size: int = 11,
             sigma: float = 1.5) -> Tensor:
    """Local SSIM (Wang et al. 2004, eq. 13) at every position where the window fits: ``[B, C, H-10, W-10]``.

    SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)), with Gaussian-
    weighted local means, variances and covariance, C1 = (K1 L)^2, C2 = (K2 L)^2 and L the data range."""
    _check_pair(reference, reconstruction)
    channels = reference.shape[1]
    window = gaussian_window(window_size, sigma).expand(channels, 1, -1, -1)
    def local_mean(t: Tensor) -> Tensor:  # depthwise: each channel averaged on its own
        return F.conv2d(t, window, groups=channels)
    x, y = reference.double(), reconstruction.double()
    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov_xy = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(reference: Tensor, reconstruction: Tensor, data_range: float = 2.0, window_size: int = 11,
         sigma: float = 1.5) -> Tensor:
    """Mean SSIM per image ``[B]`` (1 = identical), averaged over positions and channels."""
    if min(reference.shape[-2:]) < window_size:
        raise ValueError(f"SSIM's {window_size}x{window_size} window does not fit images of "
                         f"{tuple(reference.shape[-2:])}; pass a smaller window_size (odd)")
    return ssim_map(reference, reconstruction, data_range, window_size, sigma).flatten(1).mean(1).float()


def rfid(originals: Tensor, reconstructions: Tensor, feature_space: str = "lab-clip",
         device: torch.device | str | None = None) -> float:
    """Reconstruction FID (LDM Tab. 8): FID between uint8 originals and their reconstructions ``[N, C, H, W]``."""
    return fid_from_features(extract_features(originals, feature_space, device),
                             extract_features(reconstructions, feature_space, device))
