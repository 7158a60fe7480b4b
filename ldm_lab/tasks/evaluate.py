"""``ldm-lab eval``: score a trained run against the held-out split and record the numbers.

Diffusion runs: FID / KID / precision / recall of N generated images against N validation images, generated
with the validation items' own labels or captions (so both sets have the same class mix), in the feature space
of the dataset (its ``DATASETS`` entry's ``feature_space``: ``fmnist-classifier`` for Fashion-MNIST, ``lab-clip``
for emoji and shapes). Autoencoder runs: PSNR, SSIM and rFID of the reconstructions of N validation images (LDM
Tab. 8). N must reach ``MIN_SAMPLES`` (50) unless ``min_samples`` lowers it: smaller sets score noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ldm_lab.data import DATASETS, held_out_sample, split_batch
from ldm_lab.device import model_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.metrics import ResultRecord, fidelity_metrics, fidelity_records, psnr, rfid, ssim, to_uint8
from ldm_lab.metrics.fidelity import MIN_SAMPLES, check_finite_images, check_sample_count
from ldm_lab.tasks.diffusion import generate_like
from ldm_lab.tasks.runs import Run
from ldm_lab.tasks.targets import DiffusionTarget

DIVERGED = ("the sampler diverged. Likely causes: a huge --guidance-scale (the guided prediction overflows), a "
            "sampler or --steps that is unstable for this model, or weights that went NaN in training (look for a "
            "NaN loss in the run's metrics.jsonl); nothing was saved or scored.")


def default_feature_space(run: Run) -> str:
    """The feature space the run's dataset is scored in (``DATASETS[dataset].feature_space``)."""
    return DATASETS[run.target.dataset].feature_space


def validation_batches(run: Run, num_samples: int, batch_size: int) -> Iterator[dict]:
    """The first ``num_samples`` items of the validation split (in a fixed shuffled order), in batches."""
    return split_batch(held_out_sample(run.target.dataset, run.target.resolution, num_samples), batch_size)


@torch.no_grad()
def evaluate_diffusion(run: Run, num_samples: int, feature_space: str | None = None,
                       settings: SamplingSettings = SamplingSettings(seed=0), batch_size: int = 64,
                       min_samples: int = MIN_SAMPLES) -> list[ResultRecord]:
    """FID, KID, precision and recall of the run's samples against the validation split (one generator, from
    ``settings.seed``, draws the noise of every batch)."""
    feature_space = default_feature_space(run) if feature_space is None else feature_space
    check_sample_count(num_samples, num_samples, min_samples=min_samples)  # before minutes of sampling
    generator = settings.generator()
    real, fake = [], []
    for batch in tqdm(list(validation_batches(run, num_samples, batch_size)), desc="eval"):
        real.append(to_uint8(batch["image"]))
        images = generate_like(run.model, batch, settings=settings, generator=generator)
        fake.append(to_uint8(check_finite_images(images.cpu(), "generated images", DIVERGED)))
    device = model_device(run.model)
    result = fidelity_metrics(torch.cat(real), torch.cat(fake), feature_space, device=device,
                              min_samples=min_samples)
    return fidelity_records(result, experiment="eval", settings=f"{describe_run(run)} {settings.describe()}")


@torch.no_grad()
def evaluate_autoencoder(run: Run, num_samples: int, feature_space: str | None = None,
                         batch_size: int = 64, min_samples: int = MIN_SAMPLES) -> list[ResultRecord]:
    """PSNR and SSIM (pixels) and rFID (``feature_space``) of validation reconstructions."""
    feature_space = default_feature_space(run) if feature_space is None else feature_space
    check_sample_count(num_samples, num_samples, min_samples=min_samples, neighborhood=None)
    device = model_device(run.model)
    originals, reconstructions = [], []
    for batch in validation_batches(run, num_samples, batch_size):
        images = batch["image"].to(device)
        originals.append(images.cpu())
        output = run.model.autoencoder(images, sample_posterior=False)
        reconstructions.append(check_finite_images(
            output.reconstruction.cpu(), "reconstructions",
            "the autoencoder's weights or its input went NaN (look for a NaN loss in the run's metrics.jsonl)"
        ).clamp(-1, 1))
    x, y = torch.cat(originals), torch.cat(reconstructions)
    context = {"num_samples": len(x), "experiment": "eval", "settings": describe_run(run)}
    return [ResultRecord("psnr", float(psnr(x, y).mean()), "pixels", **context),
            ResultRecord("ssim", float(ssim(x, y).mean()), "pixels", **context),
            ResultRecord("rfid", rfid(to_uint8(x), to_uint8(y), feature_space, device), feature_space, **context)]


def describe_run(run: Run) -> str:
    weights = "ema" if run.ema else "raw"
    return f"run={Path(run.run_dir).name} target={run.target.name} step={run.step} weights={weights}"


def evaluate_run(run: Run, num_samples: int, feature_space: str | None = None,
                 settings: SamplingSettings | None = None, min_samples: int = MIN_SAMPLES) -> list[ResultRecord]:
    """The metrics of a diffusion or an autoencoder run (``settings``: sampling, for diffusion runs; each set
    needs ``min_samples`` images, see :func:`ldm_lab.metrics.fidelity.check_sample_count`)."""
    if isinstance(run.target, DiffusionTarget):
        settings = default_settings(run) if settings is None else settings
        return evaluate_diffusion(run, num_samples, feature_space, settings, min_samples=min_samples)
    return evaluate_autoencoder(run, num_samples, feature_space, min_samples=min_samples)


def default_settings(run: Run) -> SamplingSettings:
    """How the target's images are drawn by default (its guidance), with seed 0."""
    return dataclasses.replace(run.target.task.sampling, seed=0)
