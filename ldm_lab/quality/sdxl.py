"""SDXL's training tricks scored (Podell et al. 2023, §2.2-2.5; notebook 06), as rows of
``data/results/sdxl_tricks.csv``, one ``experiment`` per trick:

* ``size`` — Tab. 2 in miniature: KID, FID, CLIP score and detail of lab-sdxl-large-only, -no-size and -size, each
  asked for SDXL's sampling default (original size = target size, crop (0, 0)), against held-out scenes photographed
  at least as large as the training size (the sharp images such a request asks for), beside a real-vs-real row;
* ``refiner`` — the base alone, base + refiner (the latent hand-off at timestep 200) and base + SDEdit refine, scored
  alike, with the detail measure the refiner was conditioned on;
* ``crop`` / ``buckets`` — the objects cut by the frame and the objects' stretch per (model, case):
  ``ldm_lab.tasks.sdxl_experiments.geometry_table``.

    size_scores(count=512); refiner_scores(count=512); geometry_scores(count=128)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from ldm_lab.compression.verdicts import Verdict
from ldm_lab.data import build_dataset, collate
from ldm_lab.data.sdxl_variants import LargeOriginals
from ldm_lab.device import resolve_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.metrics import DualEncoder, extract_features, lab_clip_encoder
from ldm_lab.metrics.bootstrap import mean_interval
from ldm_lab.metrics.images import to_uint8
from ldm_lab.metrics.sharpness import image_sharpness
from ldm_lab.models import LatentDiffusion
from ldm_lab.paths import git_commit, results_dir
from ldm_lab.quality.benchmark import FEATURE_SPACE, append_row, comparison_verdicts, sampling_columns, score
from ldm_lab.shipping.load import load_trained
from ldm_lab.tasks.diffusion import generate
from ldm_lab.tasks.refiner import Handoff, generate_with_refiner
from ldm_lab.tasks.sdxl_experiments import bucket_cases, crop_cases, geometry_prompts, geometry_table, shapes_draw
from ldm_lab.tasks.targets import get_target

SDXL_TABLE = "sdxl_tricks.csv"
SIZE_ARMS = ("lab-sdxl-large-only", "lab-sdxl-no-size", "lab-sdxl-size")
# SDXL Tab. 2 (class-conditional ImageNet at 512², FID-5k): discard small images, all without size, all with size
PAPER_TAB2_FID = {"lab-sdxl-large-only": 43.84, "lab-sdxl-no-size": 39.76, "lab-sdxl-size": 36.53}
CROP_ARMS = ("lab-sdxl-size", "lab-sdxl-no-crop")
TRAINING_CROPS = ((0, 0), (0, 16), (16, 0))   # (top, left): (0, 0) is SDXL's sampling default; the others are
                                              # crops of the kind training saw (originals up to 1.5x wider/taller)
BUCKET_ARMS = ("lab-sdxl-buckets", "lab-sdxl-square", "lab-sdxl-centre-crop")
REFINER_BASE, REFINER = "lab-sdxl-size", "lab-sdxl-refiner"
BATCH = 64                                    # images drawn at once; batch b draws with seed settings.seed + b
SCORED_METRICS = (("kid", True), ("fid", True), ("clip_score", False), ("detail", False))  # (column, lower: better)

ImagesFor = Callable[[list[str], SamplingSettings], Tensor]  # (prompts, settings) -> images in [-1, 1]


def load_model(reference: str | Path, device: str | torch.device | None = None) -> LatentDiffusion:
    """A shipped name (``lab-sdxl-size``) or a run folder, its EMA weights, in eval mode."""
    return load_trained(reference, resolve_device(device), ema=True).model.eval()


def sharp_held_out(count: int, split: str = "val") -> tuple[Tensor, list[str]]:
    """The first ``count`` scenes of ``split`` photographed at least as large as 64x64 (in [-1, 1]) and their
    captions: what a request for original size = target size should look like."""
    data = LargeOriginals(build_dataset("shapes_multiscale", split, (64, 64)))
    if count > len(data):
        raise ValueError(f"{split} holds {len(data)} such scenes; ask for at most that many.")
    batch = collate([data[i] for i in range(count)])
    return batch["image"], list(batch["caption"])


@dataclasses.dataclass(frozen=True)
class Reference:
    """What every row of an experiment is scored against: the held-out scenes' features, and lab-clip."""

    features: Tensor        # lab-clip features of the held-out scenes
    encoder: DualEncoder    # lab-clip, for the CLIP score

    @classmethod
    def of(cls, real: Tensor) -> Reference:
        return cls(extract_features(to_uint8(real), FEATURE_SPACE), lab_clip_encoder())


def in_batches(images_for: ImagesFor, prompts: Sequence[str], settings: SamplingSettings) -> Tensor:
    """``images_for`` over ``prompts`` in batches of ``BATCH``, batch b with seed ``settings.seed + b``."""
    return torch.cat([images_for(list(prompts[start:start + BATCH]), _batch_settings(settings, start)).cpu()
                      for start in range(0, len(prompts), BATCH)])


def _batch_settings(settings: SamplingSettings, start: int) -> SamplingSettings:
    return dataclasses.replace(settings, seed=(settings.seed or 0) + start // BATCH)


def detail_columns(images: Tensor, num_resamples: int) -> dict[str, float]:
    """Mean sharpness (``image_sharpness``: Laplacian energy x 1000) with its interval over images."""
    detail = mean_interval(image_sharpness(images).numpy(), num_resamples=num_resamples)
    return {"detail": detail.estimate, "detail_ci_low": detail.low, "detail_ci_high": detail.high}


def scored_row(experiment: str, model: str, images: Tensor, captions: Sequence[str], reference: Reference,
               num_resamples: int) -> dict:
    """KID, FID, CLIP score and detail of ``images`` (in [-1, 1]) against the reference scenes, with intervals."""
    scores = score(to_uint8(images), captions, reference.features, reference.encoder, num_resamples)
    return {"experiment": experiment, "model": model, **scores, **detail_columns(images, num_resamples),
            "feature_space": FEATURE_SPACE, "git_commit": git_commit()}


def real_row(experiment: str, count: int, reference: Reference, num_resamples: int) -> dict:
    """Real vs real: ``count`` sharp *training* scenes scored against the held-out ones, the floor of KID / FID."""
    train, captions = sharp_held_out(count, split="train")
    return scored_row(experiment, "real (train split)", train, captions, reference, num_resamples)


def size_scores(count: int = 512, models: Mapping[str, str | Path] | None = None,
                settings: SamplingSettings | None = None, num_resamples: int = 200,
                table_folder: Path | None = None) -> pd.DataFrame:
    """Tab. 2 in miniature: each model of ``SIZE_ARMS`` (shipped, or the run folders in ``models``) draws one
    image per held-out caption with SDXL's default micro-conditions; rows added to the table, real-vs-real first."""
    real, captions = sharp_held_out(count)
    reference = Reference.of(real)
    rows = [real_row("size", count, reference, num_resamples)]
    for name in SIZE_ARMS:
        model = load_model((models or {}).get(name, name))
        drawn = settings or get_target(name).task.sampling
        images = in_batches(lambda p, s: generate(model, prompts=p, settings=s), captions, drawn)
        rows.append(scored_row("size", name, images, captions, reference, num_resamples) | sampling_columns(drawn))
    return _record(rows, table_folder)


def refiner_scores(count: int = 512, models: Mapping[str, str | Path] | None = None,
                   settings: SamplingSettings | None = None, num_resamples: int = 200,
                   table_folder: Path | None = None) -> pd.DataFrame:
    """The base alone (``REFINER_BASE``), base + ``REFINER`` (latent hand-off) and base + SDEdit refine (shipped, or
    the run folders in ``models``), on the same held-out captions and noise, scored as :func:`size_scores` rows
    (experiment ``refiner``)."""
    real, captions = sharp_held_out(count)
    reference = Reference.of(real)
    base_model, refiner_model = (load_model((models or {}).get(name, name)) for name in (REFINER_BASE, REFINER))
    drawn = settings or get_target(REFINER_BASE).task.sampling
    arms: dict[str, ImagesFor] = {
        "base alone": lambda p, s: generate(base_model, prompts=p, settings=s),
        "base + refiner (hand-off)": lambda p, s: generate_with_refiner(base_model, refiner_model, prompts=p,
                                                                         settings=s),
        "base + SDEdit refine": lambda p, s: generate_with_refiner(base_model, refiner_model, prompts=p, settings=s,
                                                                    handoff=Handoff.SDEDIT)}
    rows = [real_row("refiner", count, reference, num_resamples)]
    rows += [scored_row("refiner", arm, in_batches(images_for, captions, drawn), captions, reference, num_resamples)
             | sampling_columns(drawn) for arm, images_for in arms.items()]
    return _record(rows, table_folder)


def geometry_scores(count: int = 128, models: Mapping[str, str | Path] | None = None,
                    settings: SamplingSettings | None = None, num_resamples: int = 1000,
                    table_folder: Path | None = None) -> pd.DataFrame:
    """Crop conditioning (``CROP_ARMS`` at ``TRAINING_CROPS``) and aspect buckets (``BUCKET_ARMS`` at each bucket):
    ``count`` one-object prompts per (model, case), the same prompts and noise everywhere; cut-off fraction and
    log2 stretch with intervals (experiments ``crop`` and ``buckets``)."""
    prompts = geometry_prompts(count)
    drawn = settings or get_target("lab-sdxl-size").task.sampling
    tables = []
    for experiment, arms, cases in (("crop", CROP_ARMS, crop_cases(TRAINING_CROPS)),
                                    ("buckets", BUCKET_ARMS, bucket_cases())):
        draws = {name: _batched_draw(load_model((models or {}).get(name, name)), prompts, drawn) for name in arms}
        table = geometry_table(draws, cases, num_resamples=num_resamples)
        tables.append(table.assign(experiment=experiment, git_commit=git_commit(), **sampling_columns(drawn)))
    return _record(pd.concat(tables).to_dict("records"), table_folder)


def _batched_draw(model: LatentDiffusion, prompts: Sequence[str], settings: SamplingSettings) -> Callable[..., Tensor]:
    """``shapes_draw`` over ``prompts`` in batches, as :func:`in_batches` draws."""
    return lambda **case: in_batches(lambda p, s: shapes_draw(model, p, s)(**case), prompts, settings)


def experiment_verdicts(table: pd.DataFrame, experiment: str, model: str, other: str,
                        better: bool = True) -> list[Verdict]:
    """"``model`` scores better (``better=False``: worse) than ``other``" on KID, FID, CLIP score and detail, from
    the newest rows of one scored experiment (``size``, ``refiner``), by the project's one rule
    (``comparison_verdicts``)."""
    rows = table[table["experiment"] == experiment]
    if rows.empty:
        raise ValueError(f"the table holds no {experiment!r} rows: score them with `ldm-lab sdxl-tricks`.")
    return comparison_verdicts(rows, model, other, better=better, metrics=SCORED_METRICS)


def geometry_verdict(table: pd.DataFrame, row: tuple[str, str], other: tuple[str, str], metric: str) -> Verdict:
    """"(model, case) ``row`` scores lower than ``other`` on ``metric``" (``cut_off_fraction`` or
    ``abs_log2_stretch``: lower is better), from a geometry table (``geometry_table``'s, or the stored ``crop`` /
    ``buckets`` rows), by the one rule. Rows are named "model @ case"."""
    keyed = table.assign(model=[f"{m} @ {c}" for m, c in zip(table["model"], table["case"], strict=True)])
    verdicts = comparison_verdicts(keyed, " @ ".join(row), " @ ".join(other), better=True, metrics=[(metric, True)])
    if not verdicts:
        raise ValueError(f"the table has no {metric!r} column: use cut_off_fraction or abs_log2_stretch.")
    return verdicts[0]


def read_sdxl_table(table_folder: Path | None = None) -> pd.DataFrame:
    """The stored rows (newest last); ``ldm-lab sdxl-tricks`` writes them."""
    path = (table_folder or results_dir()) / SDXL_TABLE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist yet: score the models with `ldm-lab sdxl-tricks`.")
    return pd.read_csv(path)


def _record(rows: list[dict], table_folder: Path | None) -> pd.DataFrame:
    path = (table_folder or results_dir()) / SDXL_TABLE
    for row in rows:
        append_row(path, row)
    return pd.DataFrame(rows)
