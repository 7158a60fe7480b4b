"""How good is a first stage, and what does its latent look like (LDM Tab. 8, App. G)?

Reconstruction: PSNR and SSIM per image against the original, rFID between the two sets in a feature space.
Latent: its standard deviation, and the scale factor 1/std that makes it unit-variance for the diffusion model
(LDM App. G, ``scale_by_std``): Stable Diffusion's 0.18215 is this number measured once for its KL-f8 VAE
(latent std about 5.5), then fixed. VQ: how many of the K codes the validation images use, and the perplexity
exp(entropy of code use) (K when all are used evenly, 1 when one code does everything).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from ldm_lab.compression.ablation import training_sample
from ldm_lab.compression.rows import Measured
from ldm_lab.device import model_device
from ldm_lab.metrics import (Interval, extract_features, fid_from_features, psnr, recentred_interval, ssim,
                             to_uint8)
from ldm_lab.nn.autoencoder import Autoencoder
from ldm_lab.nn.distributions import DiagonalGaussian
from ldm_lab.nn.quantize import code_usage
from ldm_lab.presets import count_parameters
from ldm_lab.tasks.targets import get_target


@dataclass(frozen=True)
class Reconstructions:
    """A first stage applied to a set of images."""

    originals: Tensor        # [N, C, H, W] in [-1, 1]
    reconstructions: Tensor  # [N, C, H, W] in [-1, 1]: D(mean of q(z|x)) for KL, D(z_q) for VQ
    latents: Tensor          # [N, c, H/f, W/f]: E(x) as a diffusion model sees it, unscaled (KL: a posterior sample)
    codes: Tensor | None     # [N, H/f, W/f]: VQ code indices; None for KL


@torch.no_grad()
def reconstruct(autoencoder: Autoencoder, images: Tensor, batch_size: int = 64) -> Reconstructions:
    """Encode and decode ``images`` ``[N, C, H, W]`` in [-1, 1] in batches, on the autoencoder's device."""
    device = model_device(autoencoder)
    parts = [_reconstruct_batch(autoencoder.eval(), images[i:i + batch_size].to(device))
             for i in range(0, len(images), batch_size)]
    recon, latents, codes = (list(column) for column in zip(*parts))
    return Reconstructions(images.cpu(), torch.cat(recon), torch.cat(latents),
                           None if codes[0] is None else torch.cat(codes))


def _reconstruct_batch(autoencoder: Autoencoder, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    encoded = autoencoder.encode(x)
    if isinstance(encoded, DiagonalGaussian):
        reconstruction, latents, codes = autoencoder.decode(encoded.mode()), encoded.sample(), None
    else:
        latents, info = encoded
        reconstruction, codes = autoencoder.decode(latents), info.indices.cpu()
    return reconstruction.clamp(-1, 1).cpu(), latents.cpu(), codes


def rfid_interval(originals: Tensor, reconstructions: Tensor, feature_space: str = "lab-clip",
                  device: str | torch.device | None = None, num_resamples: int = 200, seed: int = 0) -> Interval:
    """Reconstruction FID (LDM Tab. 8) between two image sets ``[N, C, H, W]`` in [-1, 1], with its re-centred
    bootstrap interval (``ldm_lab.metrics.recentred_interval``)."""
    real, made = (extract_features(to_uint8(images), feature_space, device) for images in (originals, reconstructions))
    return recentred_interval(lambda r, g: fid_from_features(real[r], made[g]), (len(real), len(made)),
                              num_resamples, seed=seed)


def real_vs_real_rfid(images: Tensor, feature_space: str = "lab-clip", device: str | torch.device | None = None,
                      seed: int = 0, num_resamples: int = 200) -> Interval:
    """The calibration row of an rFID table: FID between ``images`` (held-out, [-1, 1]) and as many other real
    images (training split) in the same feature space, with its interval. A reconstruction set below it is
    closer to the originals than another set of real emoji is; near it, the first stage keeps what the features
    see."""
    others = training_sample(len(images), seed=seed)["image"]
    return rfid_interval(images, others, feature_space, device, num_resamples, seed)


def latent_scale(latents: Tensor) -> float:
    """LDM's ``scale_by_std`` (App. G): 1 / std of the latents, so z = scale * E(x) has unit variance."""
    return 1.0 / latents.float().std().item()


@dataclass(frozen=True, kw_only=True)
class FirstStageRow(Measured):
    """One line of ``data/results/autoencoders.csv``: a first stage at factor f (a row of LDM Tab. 8)."""

    first_stage: str          # the training target (or shipped name) of the weights
    regularizer: str          # "kl" or "vq"
    f: int                    # downsampling factor
    latent_shape: str         # "h x w x c" of a 64x64 image's latent
    compression: float        # image values / latent values (H W C / h w c)
    parameters: int
    psnr: float               # dB, mean over images
    psnr_std: float           # spread over images (LDM Tab. 8 reports mean +- std)
    ssim: float
    ssim_std: float
    rfid: float               # FID(originals, reconstructions) in ``feature_space``
    rfid_ci_low: float        # its 95 % bootstrap interval
    rfid_ci_high: float
    latent_std: float         # std of E(x)
    scale_factor: float       # 1 / latent_std (SD's KL-f8: 0.18215)
    codebook_size: int | None   # K (VQ); None for KL
    codebook_usage: float       # share of the K codes used by the images (VQ; NaN for KL)
    perplexity: float           # exp(entropy of code use) (VQ; NaN for KL)


def evaluate_first_stage(autoencoder: Autoencoder, images: Tensor, name: str, feature_space: str = "lab-clip",
                         batch_size: int = 64, num_resamples: int = 200) -> FirstStageRow:
    """Reconstruction quality, latent statistics and (VQ) code use of ``autoencoder`` on ``images`` in [-1, 1]."""
    return first_stage_row(autoencoder, reconstruct(autoencoder, images, batch_size), name, feature_space,
                           num_resamples)


def first_stage_row(autoencoder: Autoencoder, result: Reconstructions, name: str,
                    feature_space: str = "lab-clip", num_resamples: int = 200) -> FirstStageRow:
    """The row of ``autoencoder`` from its ``reconstruct`` output (reconstruct once, show and measure the same);
    rFID's interval from ``num_resamples`` bootstrap resamples."""
    config, (x, y, z) = autoencoder.config, (result.originals, result.reconstructions, result.latents)
    psnrs, ssims = psnr(x, y), ssim(x, y)
    perplexity, usage = (math.nan, math.nan) if result.codes is None else (
        float(v) for v in code_usage(result.codes, config.codebook_size))
    device = model_device(autoencoder)
    reconstruction_fid = rfid_interval(x, y, feature_space, device, num_resamples)
    return FirstStageRow(
        first_stage=name, regularizer=config.regularizer.value, f=config.downsampling_factor,
        latent_shape="x".join(map(str, (*z.shape[2:], z.shape[1]))), compression=x[0].numel() / z[0].numel(),
        parameters=count_parameters(autoencoder), psnr=psnrs.mean().item(), psnr_std=psnrs.std().item(),
        ssim=ssims.mean().item(), ssim_std=ssims.std().item(),
        rfid=reconstruction_fid.estimate, rfid_ci_low=reconstruction_fid.low, rfid_ci_high=reconstruction_fid.high,
        latent_std=z.float().std().item(),
        scale_factor=latent_scale(z), codebook_size=config.codebook_size, codebook_usage=usage,
        perplexity=perplexity, feature_space=feature_space, num_samples=len(x), device=str(device))


def paper_table8() -> pd.DataFrame:
    """LDM Tab. 8 (= the CompVis/latent-diffusion model zoo): the paper's first stages on ImageNet val 256x256,
    rFID in Inception space and PSNR in dB, one row per regularizer and f. Another data set, resolution and
    feature space than ours: compare trends, never values."""
    rows = [("kl", 4, 0.27, 27.53), ("kl", 8, 0.90, 24.19), ("kl", 16, 0.87, 24.08), ("kl", 32, 2.04, 22.27),
            ("vq", 4, 0.58, 27.43), ("vq", 8, 1.14, 23.07), ("vq", 16, 5.15, 20.83)]
    return pd.DataFrame(rows, columns=["regularizer", "f", "rfid", "psnr"])


def discriminator_start(target: str) -> int:
    """Training batches before the first-stage target ``target``'s GAN terms switch on (LDM's ``disc_start``):
    a shipped first stage whose ``steps`` fall short of it was trained without its discriminator."""
    return get_target(target).loss.disc_start
