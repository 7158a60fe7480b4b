"""The ablation measured from its run folders, where the runs trained (only final weights are shipped):

    ldm-lab compression-curve RUN_DIR [RUN_DIR ...] --num-samples 512 --out data/results/compression_ablation.csv
    ldm-lab compression-sampling RUN_DIR [RUN_DIR ...] --num-samples 64 --out data/results/compression_sampling.csv
    ldm-lab compression-grids RUN_DIR [RUN_DIR ...] --steps 250 1500 --out data/results/compression_ablation_grids.png

* the curve (LDM Fig. 6): for every kept checkpoint of each run (at multiples of ``--every`` steps), its EMA
  weights draw images for the categories of the emoji validation split (gone round again when more are asked for
  than it has), and FID (with a bootstrap interval) and KID against all validation images are measured in lab-clip
  space: one ``AblationRow`` per checkpoint;
* the sampling trade-off (LDM Fig. 7): each run's last checkpoint draws with DDIM at 10 ... 200 steps, timed:
  one ``TradeoffRow`` per step count;
* sample grids at chosen checkpoints (Fig. 6 shows samples, not only numbers): one image per category, the same
  noise for every model and step.

The device column names the device in words.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
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
from ldm_lab.compression.tradeoff import FIG7_SAMPLER_STEPS, FIG7_SAMPLING, TradeoffRow, tradeoff_rows
from ldm_lab.data import build_dataset
from ldm_lab.data.emoji import CATEGORIES
from ldm_lab.device import resolve_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.metrics import extract_features, to_uint8
from ldm_lab.models import LatentDiffusion
from ldm_lab.plotting import image_rows
from ldm_lab.presets.compression import COMPRESSION_FACTORS
from ldm_lab.tasks.runs import read_run_record
from ldm_lab.tasks.targets import get_target
from ldm_lab.tasks.targets.compression import ablation_target
from ldm_lab.training import load_weights
from ldm_lab.training.checkpoint import EMA_FILE, latest_checkpoint, list_checkpoints

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


def held_out_reference(num_samples: int, device: torch.device) -> tuple[Tensor, dict]:
    """The lab-clip features of every emoji validation image, and ``num_samples`` items going round them (the
    categories to draw)."""
    real = validation_batch(len(build_dataset("emoji", "val", (64, 64))))
    return extract_features(to_uint8(real["image"]), FEATURE_SPACE, device), cycle_batch(real, num_samples)


def _append_by_run(run_dirs: Sequence[str | Path], out: str | Path,
                   rows_of: Callable[[str | Path], list[AblationRow] | list[TradeoffRow]],
                   describe: Callable[[AblationRow | TradeoffRow], str], report: Callable[[str], None]) -> list:
    """``rows_of`` each run, appended to the CSV file ``out`` run by run. A run that cannot be measured (not an
    ablation run, no checkpoint) is skipped with a line on stderr, so it does not cost the others their rows."""
    out, recorded = Path(out), []
    out.parent.mkdir(parents=True, exist_ok=True)
    for run_dir in run_dirs:
        try:
            rows = rows_of(run_dir)
        except (FileNotFoundError, ValueError) as error:
            print(f"skipped {run_dir}: {error}", file=sys.stderr)
            continue
        rows_frame(rows).to_csv(out, mode="a", header=not out.exists(), index=False)
        for row in rows:
            report(describe(row))
        recorded += rows
    return recorded


def record_curves(run_dirs: Sequence[str | Path], out: str | Path, num_samples: int = 512, every: int = 0,
                  settings: SamplingSettings = FIG6_SAMPLING, num_resamples: int = 100,
                  device: str | torch.device | None = None,
                  report: Callable[[str], None] = print) -> list[AblationRow]:
    """:func:`curve_rows` of each run, ``num_samples`` images per checkpoint against all emoji validation images,
    appended to the CSV file ``out``."""
    device = resolve_device(device)
    real_features, batch = held_out_reference(num_samples, device)
    return _append_by_run(
        run_dirs, out, lambda run: curve_rows(run, real_features, batch, every, settings, num_resamples, device),
        lambda row: f"LDM-{row.f} step {row.step}: FID {row.fid:.2f} [{row.fid_ci_low:.2f}, {row.fid_ci_high:.2f}] "
                    f"KID {row.kid:.4f}", report)


def last_checkpoint_model(run_dir: str | Path, device: torch.device) -> tuple[int, LatentDiffusion]:
    """The step and model of a run's newest readable checkpoint (an error naming the run when it has none)."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet")
    step = next(step for step, folder in list_checkpoints(run_dir) if folder == checkpoint)
    return step, checkpoint_model(run_dir, checkpoint, device)


def record_tradeoff(run_dirs: Sequence[str | Path], out: str | Path, num_samples: int = 64,
                    sampler_steps: Sequence[int] = FIG7_SAMPLER_STEPS, settings: SamplingSettings = FIG7_SAMPLING,
                    num_resamples: int = 200, batch_size: int = 64, device: str | torch.device | None = None,
                    report: Callable[[str], None] = print) -> list[TradeoffRow]:
    """LDM Fig. 7 from each run's last checkpoint (``tradeoff_rows``), appended to the CSV file ``out``."""
    device = resolve_device(device)
    real_features, batch = held_out_reference(num_samples, device)

    def rows_of(run_dir: str | Path) -> list[TradeoffRow]:
        step, model = last_checkpoint_model(run_dir, device)
        return tradeoff_rows(model, ablation_factor(run_dir), step, real_features, batch, sampler_steps, settings,
                             batch_size, num_resamples, FEATURE_SPACE)

    return _append_by_run(run_dirs, out, rows_of, lambda row: (
        f"LDM-{row.f} {row.sampler_steps} DDIM steps: {1000 * row.seconds_per_image:.0f} ms/image, FID {row.fid:.2f} "
        f"[{row.fid_ci_low:.2f}, {row.fid_ci_high:.2f}]"), report)


@torch.no_grad()
def checkpoint_grids(run_dirs: Sequence[str | Path], steps: Sequence[int],
                     settings: SamplingSettings = FIG6_SAMPLING,
                     device: str | torch.device | None = None) -> dict[str, Tensor]:
    """One image per emoji category from each run's checkpoints at ``steps`` (a run that lacks one of them is an
    error naming what it kept): ``{"LDM-f\nstep s": uint8 [categories, 3, 64, 64]}`` ordered by f, then step.
    Every model and step starts from the same noise (``settings.seed``)."""
    device = resolve_device(device)
    one_per_category = {"image": torch.zeros(len(CATEGORIES), 3, 64, 64), "label": torch.arange(len(CATEGORIES))}
    grids = {}
    for run_dir in sorted(run_dirs, key=ablation_factor):
        kept = dict(list_checkpoints(run_dir))
        if missing := [step for step in steps if step not in kept]:
            raise FileNotFoundError(f"{run_dir} kept no checkpoint at step(s) {missing}; it kept {sorted(kept)}")
        for step in steps:
            model = checkpoint_model(run_dir, kept[step], device)
            grids[f"LDM-{ablation_factor(run_dir)}\nstep {step}"] = generate_images(model, one_per_category, settings,
                                                                                   progress=False)
    return grids


def record_grids(run_dirs: Sequence[str | Path], steps: Sequence[int], out: str | Path,
                 settings: SamplingSettings = FIG6_SAMPLING, device: str | torch.device | None = None) -> Path:
    """:func:`checkpoint_grids` drawn as one figure (a row per model and step, a column per category), saved as
    the PNG file ``out``."""
    grids = checkpoint_grids(run_dirs, steps, settings, device)
    image_rows({name: images / 127.5 - 1 for name, images in grids.items()}, column_titles=list(CATEGORIES),
               title=f"LDM-f during training: one sample per category, the same noise ({settings.describe()})",
               save=out)
    return Path(out)
