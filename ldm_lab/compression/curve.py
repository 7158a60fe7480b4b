"""FID against training steps for LDM-{1..32} runs (LDM Fig. 6), measured where the runs trained:

    ldm-lab compression-curve RUN_DIR [RUN_DIR ...] --num-samples 512 --every 1000 \\
        --out data/results/compression_ablation_gpu.csv

For every kept checkpoint of each run (at multiples of ``--every`` steps): its EMA weights draw images for the
categories of the emoji validation split (gone round again when more are asked for than it has), and FID (with a
bootstrap interval) and KID against all validation images are measured in lab-clip space. One ``AblationRow`` per
checkpoint; the device column names the device in words.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ldm_lab.compression.ablation import (
    FIG6_SAMPLING,
    AblationRow,
    ablation_row,
    cycle_batch,
    generate_images,
    sample_quality,
    validation_batch,
)
from ldm_lab.compression.rows import rows_frame
from ldm_lab.data import build_dataset
from ldm_lab.device import resolve_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.metrics import extract_features, to_uint8
from ldm_lab.models import LatentDiffusion
from ldm_lab.presets.compression import COMPRESSION_FACTORS
from ldm_lab.tasks.runs import read_run_record
from ldm_lab.tasks.targets import get_target
from ldm_lab.tasks.targets.compression import ablation_target
from ldm_lab.training import load_weights
from ldm_lab.training.checkpoint import EMA_FILE, list_checkpoints

FEATURE_SPACE = "lab-clip"
FACTOR_OF_TARGET = {ablation_target(f): f for f in COMPRESSION_FACTORS}


def device_in_words(device: torch.device) -> str:
    """"cuda (NVIDIA H100 80GB HBM3)", or the device type."""
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type


def ablation_factor(run_dir: str | Path) -> int:
    """f of an LDM-f run, or an error naming the runs this measures."""
    target = read_run_record(run_dir)["target"]
    if target not in FACTOR_OF_TARGET:
        raise ValueError(f"{run_dir} trained {target}; the curve measures the ablation's runs "
                         f"({', '.join(FACTOR_OF_TARGET)}).")
    return FACTOR_OF_TARGET[target]


def checkpoint_model(run_dir: str | Path, checkpoint: Path, device: torch.device) -> LatentDiffusion:
    """The run's model with a checkpoint's EMA weights (raw ones if the run kept no EMA), in eval mode."""
    model = get_target(read_run_record(run_dir)["target"]).build_model().to(device)
    return load_weights(model, checkpoint, ema=(checkpoint / EMA_FILE).exists()).eval()


def curve_rows(run_dir: str | Path, real_features: torch.Tensor, batch: dict, every: int = 0,
               settings: SamplingSettings = FIG6_SAMPLING, num_resamples: int = 100,
               device: torch.device | None = None) -> list[AblationRow]:
    """One row per checkpoint of ``run_dir`` at a multiple of ``every`` steps (0: every checkpoint)."""
    device, f = resolve_device(device), ablation_factor(run_dir)
    rows = []
    for step, checkpoint in tqdm(list_checkpoints(run_dir), desc=f"LDM-{f}"):
        if every and step % every:
            continue
        model = checkpoint_model(run_dir, checkpoint, device)
        generated = extract_features(generate_images(model, batch, settings, batch_size=256, progress=False),
                                     FEATURE_SPACE, device)
        quality = sample_quality(real_features, generated, num_resamples=num_resamples)
        rows.append(ablation_row(f, step, quality, settings, feature_space=FEATURE_SPACE,
                                 device=device_in_words(device)))
    return rows


def record_curves(run_dirs: Sequence[str | Path], out: str | Path, num_samples: int = 512, every: int = 0,
                  settings: SamplingSettings = FIG6_SAMPLING, num_resamples: int = 100,
                  device: str | torch.device | None = None,
                  report: Callable[[str], None] = print) -> list[AblationRow]:
    """:func:`curve_rows` of each run, ``num_samples`` images per checkpoint against all emoji validation images,
    appended to the CSV file ``out`` run by run. A run that cannot be measured (not an ablation run, no
    checkpoint) is skipped with a line on stderr, so it does not cost the others their rows."""
    device = resolve_device(device)
    real = validation_batch(len(build_dataset("emoji", "val", (64, 64))))
    real_features = extract_features(to_uint8(real["image"]), FEATURE_SPACE, device)
    batch, out = cycle_batch(real, num_samples), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recorded = []
    for run_dir in run_dirs:
        try:
            rows = curve_rows(run_dir, real_features, batch, every, settings, num_resamples, device)
        except (FileNotFoundError, ValueError) as error:
            print(f"skipped {run_dir}: {error}", file=sys.stderr)
            continue
        rows_frame(rows).to_csv(out, mode="a", header=not out.exists(), index=False)
        for row in rows:
            report(f"LDM-{row.f} step {row.step}: FID {row.fid:.2f} [{row.fid_ci_low:.2f}, {row.fid_ci_high:.2f}] "
                   f"KID {row.kid:.4f}")
        recorded += rows
    return recorded
