"""Time to quality: our CPU recipe against diffusers' off-the-shelf one, at equal wall-clock minutes.

Both arms train the whole emoji text-to-image pipeline (first stage, diffusion model, text conditioning) for the
same minutes on the same number of threads, side by side (one process each). Both are then scored the same way:
one image per held-out caption and seed, against the 354 held-out emoji, KID and FID in lab-clip's feature
space and the lab-clip CLIP score, each with a bootstrap 95 % interval, plus training images/s and sampling
seconds per image. A real-vs-real row (training-split emoji against the same held-out set) says what "as good as
real data" reads in these units; its CLIP score is lab-clip's on pairs it was trained on, so a second row,
the held-out emoji with their own captions, gives the CLIP score real images reach on unseen pairs.

    ldm-lab quality --minutes 60                 # data/results/time_to_quality.csv, figures/time_to_quality.png

Caveat in the comparison's favour of ours, stated with the numbers: our arm conditions on lab-clip's frozen text
tower (as Stable Diffusion conditions on a frozen CLIP), and the CLIP score is measured with lab-clip too;
diffusers' arm trains its text encoder from scratch, as its recipe does without a pretrained one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from ldm_lab.checkpoints import parameter_digest
from ldm_lab.compression.verdicts import Verdict, order
from ldm_lab.data import build_dataset, collate, held_out_sample
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.files import atomic_write_text, file_lock
from ldm_lab.conditioning.findings import autoencoded
from ldm_lab.metrics import (DualEncoder, Interval, clip_scores, extract_features, fid_from_features,
                             kid_from_features, lab_clip_encoder, mean_interval, recentred_interval, to_uint8)
from ldm_lab.metrics.retrieval import nearest_reference_hits
from ldm_lab.paths import git_commit, results_dir, runs_dir
from ldm_lab.models import LatentDiffusion
from ldm_lab.quality.arms import ARMS, SCORED_SAMPLING, ArmRecord, arm_images, prompt_images
from ldm_lab.quality.everyday import EVERYDAY_EMOJI, FEATURE_SPACE, base_labels, emoji_references
from ldm_lab.shipping.load import load_trained, shipped_entry
from ldm_lab.tasks.runs import lineage_of

TABLE = "time_to_quality"  # data/results/time_to_quality.csv (ldm_lab.metrics.read_csv names tables so)
RECOGNITION_CAPTIONS = 256  # taught captions drawn by recognition_scores
RECOGNITION_DRAWN_FROM = "base emoji"  # its table column; rows before it drew from all training items, tones too
GRID_PROMPTS = tuple(EVERYDAY_EMOJI)  # sixteen everyday prompts, whose drawings a reader should name


@dataclass(frozen=True)
class QualityConfig:
    """One time-to-quality run."""

    minutes: float = 60.0            # wall-clock training minutes of each arm
    threads: int = 1                 # torch threads of each arm (both arms train at once: 2 arms x 1 = 2 cores)
    seeds: int = 1                   # images per held-out caption, one seed each
    sampling_steps: int = 20         # DPM-Solver++ steps of both arms
    guidance: dict[str, float] = field(default_factory=lambda: {"ours": 3.0, "diffusers": 1.0})
                                     # diffusers' recipe trains no unconditional branch: it cannot guide
    num_resamples: int = 200         # bootstrap resamples of each interval
    out: Path | None = None          # the arms' folders (default build/runs/quality)
    first_stage: Path | None = None  # ours: a lab-autoencoder run trained before, counted against the budget

    def __post_init__(self) -> None:
        if self.minutes <= 0 or self.threads < 1 or self.seeds < 1 or self.sampling_steps < 1:
            raise ValueError(f"minutes must be positive and threads, seeds, sampling_steps at least 1; got "
                             f"{self.minutes}, {self.threads}, {self.seeds}, {self.sampling_steps}.")

    @property
    def folder(self) -> Path:
        return self.out or runs_dir() / "quality"


def train_arms(config: QualityConfig, report: Callable[[str], None] = print) -> dict[str, ArmRecord]:
    """Train both arms at once, one process each with ``config.threads`` threads (finished arms are reused)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(config.threads), "MKL_NUM_THREADS": str(config.threads),
           "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "30"}
    processes = {}
    for arm in ARMS:
        folder = config.folder / arm
        folder.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "ldm_lab.cli", "quality-arm", arm, "--minutes", str(config.minutes), "--out",
                str(folder)]
        if arm == "ours" and config.first_stage is not None:
            argv += ["--first-stage", str(config.first_stage)]
        log = open(config.folder / f"{arm}.log", "a", encoding="utf-8")
        processes[arm] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), log)
        report(f"{arm}: training for {config.minutes:g} min on {config.threads} thread(s), log {log.name}")
    records = {}
    for arm, (process, log) in processes.items():
        code = process.wait()
        log.close()
        record = ArmRecord.load(config.folder / arm)
        if code != 0 or record is None:
            raise RuntimeError(f"the {arm} arm failed (exit {code}); see {config.folder / f'{arm}.log'}.")
        records[arm] = record
    return records


KID_SUBSETS = 10  # KID subsets per evaluation (each the smaller set's size: with 354 against 354, the whole sets)


def recentred_kid(real: Tensor, generated: Tensor, num_resamples: int, seed: int = 0) -> Interval:
    """KID (``KID_SUBSETS`` subsets) and its recentred bootstrap interval."""
    return recentred_interval(lambda r, g: kid_from_features(real[r], generated[g], subsets=KID_SUBSETS)[0],
                              (len(real), len(generated)), num_resamples, seed=seed)


def recentred_fid(real: Tensor, generated: Tensor, num_resamples: int, seed: int = 0) -> Interval:
    """FID and its recentred bootstrap interval (``ldm_lab.metrics.fid_interval`` is the plain bootstrap's)."""
    return recentred_interval(lambda r, g: fid_from_features(real[r], generated[g]), (len(real), len(generated)),
                              num_resamples, seed=seed)


def score(images: Tensor, captions: Sequence[str], real_features: Tensor, encoder: DualEncoder,
          num_resamples: int = 200) -> dict[str, float]:
    """KID, FID (lab-clip features, against ``real_features``) and CLIP score of uint8 ``images`` drawn for
    ``captions``, each with a bootstrap 95 % interval (``<metric>_ci_low`` / ``<metric>_ci_high``)."""
    features = extract_features(images, FEATURE_SPACE)
    kid = recentred_kid(real_features, features, num_resamples)
    fid = recentred_fid(real_features, features, num_resamples)
    clip = mean_interval(clip_scores(images, list(captions), encoder).numpy(), num_resamples=num_resamples)
    return {"kid": kid.estimate, "kid_ci_low": kid.low, "kid_ci_high": kid.high,
            "fid": fid.estimate, "fid_ci_low": fid.low, "fid_ci_high": fid.high,
            "clip_score": clip.estimate, "clip_score_ci_low": clip.low, "clip_score_ci_high": clip.high,
            "num_generated": len(images), "num_real": len(real_features)}


def held_out_captions(seeds: int) -> tuple[Tensor, list[str]]:
    """The held-out emoji (uint8) and each caption repeated ``seeds`` times."""
    size = len(build_dataset("emoji", "val", (64, 64)))
    batch = held_out_sample("emoji", (64, 64), size)
    return to_uint8(batch["image"]), list(batch["caption"]) * seeds


def real_row(count: int, real_features: Tensor, encoder: DualEncoder, num_resamples: int) -> dict:
    """Real-vs-real: ``count`` training-split emoji (another set of emoji) scored like a generated set."""
    train = build_dataset("emoji", "train", (64, 64))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:count]
    batch = collate([train[int(i)] for i in order])
    return {"arm": "real (train split)", **score(to_uint8(batch["image"]), batch["caption"], real_features, encoder,
                                                num_resamples)}


def held_out_row(real: Tensor, captions: Sequence[str], encoder: DualEncoder, num_resamples: int) -> dict:
    """The CLIP score of the held-out emoji with their own captions: what real images reach on pairs lab-clip
    never saw. The real-vs-real row's CLIP score reads far higher (90.7 against 66.5 for the held-out pairs,
    measured) because lab-clip was trained on the train split's pairs (``emoji_pairs("train")``); the arms are
    scored on held-out captions, so this is their CLIP-score reference. KID and FID of a set against itself
    mean nothing and are left empty."""
    clip = mean_interval(clip_scores(real, list(captions), encoder).numpy(), num_resamples=num_resamples)
    return {"arm": "real (held-out)", "clip_score": clip.estimate, "clip_score_ci_low": clip.low,
            "clip_score_ci_high": clip.high, "num_generated": len(real), "num_real": len(real)}


def sample_arm(arm: str, config: QualityConfig, captions: Sequence[str]) -> tuple[Tensor, float]:
    """The arm's images for ``captions`` (seed s for the s-th repeat of the caption list) and seconds per image."""
    per_seed = len(captions) // config.seeds
    start = time.perf_counter()
    images = torch.cat([arm_images(arm, config.folder / arm, captions[s * per_seed:(s + 1) * per_seed], seed=s,
                                   guidance_scale=config.guidance[arm], steps=config.sampling_steps)
                        for s in range(config.seeds)])
    return images, (time.perf_counter() - start) / len(images)


def arm_row(arm: str, record: ArmRecord, config: QualityConfig, captions: Sequence[str], real_features: Tensor,
            encoder: DualEncoder) -> dict:
    images, seconds_per_image = sample_arm(arm, config, captions)
    return {"arm": arm, **score(to_uint8(images.cpu()), captions, real_features, encoder, config.num_resamples),
            "minutes": record.minutes, "threads": record.threads,
            "first_stage_s": record.seconds.get("first_stage"), "diffusion_s": record.seconds.get("diffusion"),
            "first_stage_steps": record.steps.get("first_stage"), "diffusion_steps": record.steps.get("diffusion"),
            "train_images_per_s": record.images_per_second.get("diffusion"),
            "first_stage_images_per_s": record.images_per_second.get("first_stage"),
            "sample_s_per_image": seconds_per_image, "guidance_scale": config.guidance[arm],
            "sampling_steps": config.sampling_steps, "parameters": sum(record.parameters.values())}


MODEL_TABLE = "text_to_image_scores"  # data/results/text_to_image_scores.csv
FIRST_STAGE_DIGEST_DIGITS = 12  # of parameter_digest: enough to tell first stages apart at a glance


def model_scores(model: LatentDiffusion, name: str, seeds: int = 3, settings: SamplingSettings = SCORED_SAMPLING,
                 num_resamples: int = 200) -> dict:
    """A text-to-image model scored as its bars are stated: one image per held-out caption and seed (seed s for the
    s-th repeat), drawn with ``settings`` (the bars: ``SCORED_SAMPLING``; a few-step student: its own sampler),
    against the held-out emoji: KID, FID, CLIP score with intervals."""
    real, captions = held_out_captions(seeds)
    per_seed, start = len(captions) // seeds, time.perf_counter()
    images = torch.cat([prompt_images(model, captions[s * per_seed:(s + 1) * per_seed], s, settings)
                        for s in range(seeds)])
    seconds_per_image = (time.perf_counter() - start) / len(images)
    row = score(to_uint8(images.cpu()), captions, extract_features(real, FEATURE_SPACE), lab_clip_encoder(),
                num_resamples)
    return {"model": name, **row, "seeds": seeds, **sampling_columns(settings),
            "sample_s_per_image": seconds_per_image, "threads": torch.get_num_threads(),
            "feature_space": FEATURE_SPACE, "git_commit": git_commit()}


def sampling_columns(settings: SamplingSettings) -> dict:
    """How a table row's images were drawn: guidance scale, sampler steps (explicit timesteps counted) and, when
    not the default DPM-Solver++(2M), the sampler's name."""
    steps = len(settings.timesteps) if settings.timesteps is not None else settings.steps
    columns = {"guidance_scale": settings.guidance_scale, "sampling_steps": steps}
    if settings.sampler != SamplingSettings.sampler:
        columns["sampler"] = settings.sampler if isinstance(settings.sampler, str) else type(settings.sampler).__name__
    return columns


def recognition_scores(model: LatentDiffusion, count: int = RECOGNITION_CAPTIONS,
                       settings: SamplingSettings = SCORED_SAMPLING, num_resamples: int = 200, seed: int = 0) -> dict:
    """Does the model draw the emoji it was taught? ``count`` captions of base training emoji (a fixed draw; no
    skin-tone variants, so that each emoji counts once: drawn from all 3,432 items, half the draws were people in
    five tones, the most often seen and best drawn), one image each; a hit when the caption's own training emoji
    (any of its skin tones: they differ only in a few pixels' colour) is the drawing's nearest
    (``recognition_top1``) or among its 5 nearest (``recognition_top5``) of all training emoji in lab-clip's image
    space, with bootstrap intervals over captions. ``..._autoencoded`` scores the first stage's reconstructions of
    the same emoji: the ceiling. KID, FID and CLIP score on held-out captions can be met with emoji-like colours and
    textures; this needs the shape."""
    records, images, references = emoji_references(("train",), judge=FEATURE_SPACE)
    labels = base_labels(records)                                                           # [M] base emoji
    base_ids = torch.tensor([i for i, r in enumerate(records) if not r.skin_tones])
    drawn_ids = base_ids[torch.randperm(len(base_ids), generator=torch.Generator().manual_seed(seed))[:count]]
    reconstructed = autoencoded(model, images[drawn_ids], seed)
    drawings = prompt_images(model, [records[int(i)].caption for i in drawn_ids], seed, settings)
    row = {}
    for suffix, images in (("", drawings), ("_autoencoded", reconstructed)):
        features = extract_features(to_uint8(images.cpu()), FEATURE_SPACE)
        for k in (1, 5):
            hits = nearest_reference_hits(features, references, labels[drawn_ids], labels, k).float().numpy()
            interval = mean_interval(hits, num_resamples=num_resamples, seed=seed)
            name = f"recognition_top{k}{suffix}"
            row |= {name: interval.estimate, f"{name}_ci_low": interval.low, f"{name}_ci_high": interval.high}
    return row | {"recognition_captions": len(drawn_ids), "recognition_drawn_from": RECOGNITION_DRAWN_FROM}


def score_shipped(name: str, seeds: int = 3, settings: SamplingSettings = SCORED_SAMPLING,
                  table_folder: Path | None = None, device: str | torch.device = "cpu",
                  reference: str | Path | None = None) -> dict:
    """``model_scores`` and ``recognition_scores`` of the shipped model ``name`` (or, under that name, of
    ``reference``: a run directory or a shipped file elsewhere, e.g. a teacher that is not shipped), with the
    training steps and minutes behind its weights and a digest of the first stage it decoded through (the same
    U-Net scores differently through another decoder), added to ``text_to_image_scores.csv``: the numbers its bars
    are judged by. Rows written before a column existed keep it empty."""
    if reference is None:
        shipped_entry(name)  # a shipped name, or an error listing them
    reference = name if reference is None else reference
    model = load_trained(reference, device).model.eval()
    behind = lineage_of(reference)
    row = model_scores(model, name, seeds, settings) | recognition_scores(model, settings=settings)
    row |= {"steps": behind.steps, "training_minutes": round(behind.training_seconds / 60, 1),
            "first_stage_digest": parameter_digest(model.first_stage)[:FIRST_STAGE_DIGEST_DIGITS]}
    append_row((table_folder or results_dir()) / f"{MODEL_TABLE}.csv", row)
    return row


def append_row(path: Path, row: dict) -> None:
    """Add ``row`` to the CSV table at ``path`` (new columns are added; older rows keep them empty), under a lock
    and by atomic replacement, so two scorings finishing together both land."""
    with file_lock(path.with_name(path.name + ".lock")):
        earlier = [pd.read_csv(path)] if path.exists() else []
        atomic_write_text(path, pd.concat([*earlier, pd.DataFrame([row])], ignore_index=True).to_csv(index=False))


def grid_images(config: QualityConfig, prompts: Sequence[str] = GRID_PROMPTS) -> dict[str, Tensor]:
    """Each arm's image for each fixed prompt (seed 0)."""
    return {arm: arm_images(arm, config.folder / arm, prompts, seed=0, guidance_scale=config.guidance[arm],
                            steps=config.sampling_steps) for arm in ARMS}


def run_benchmark(config: QualityConfig, report: Callable[[str], None] = print,
                  table_folder: Path | None = None, figure: Path | None = None) -> pd.DataFrame:
    """Train (or reuse) both arms, score them and the real-vs-real reference; append the rows to
    ``time_to_quality.csv`` and draw the fixed-prompt grid. Returns this run's rows."""
    from ldm_lab.plotting import image_rows  # matplotlib only where a figure is drawn

    records = train_arms(config, report)
    real, captions = held_out_captions(config.seeds)
    real_features, encoder = extract_features(real, FEATURE_SPACE), lab_clip_encoder()
    rows = [arm_row(arm, records[arm], config, captions, real_features, encoder) for arm in ARMS]
    rows.append(real_row(len(captions), real_features, encoder, config.num_resamples))
    rows.append(held_out_row(real, captions[:len(real)], encoder, config.num_resamples))
    table = pd.DataFrame(rows).assign(feature_space=FEATURE_SPACE, seeds=config.seeds, git_commit=git_commit(),
                                      cpu_threads_total=os.cpu_count())
    path = (table_folder or results_dir()) / f"{TABLE}.csv"
    table.to_csv(path, mode="a", header=not path.exists(), index=False)
    report(table[["arm", "kid", "kid_ci_low", "kid_ci_high", "fid", "clip_score", "clip_score_ci_low",
                  "clip_score_ci_high"]].to_string(index=False))
    images = grid_images(config)
    image_rows({f"{arm} ({config.minutes:g} min)": images[arm] for arm in ARMS}, column_titles=GRID_PROMPTS,
               title="fixed prompts, seed 0", save=figure)
    return table


# The scores two text-to-image models are compared on: (column, lower is better).
COMPARED_METRICS = (("kid", True), ("fid", True), ("clip_score", False), ("recognition_top1", False))


def comparison_verdicts(table: pd.DataFrame, model: str, other: str, better: bool = False,
                        metrics: Sequence[tuple[str, bool]] = COMPARED_METRICS) -> list[Verdict]:
    """The claim "``model`` scores worse than ``other``" (``better``: "... better than ..."), per metric of
    ``metrics`` ((column, lower is better) pairs) that both rows hold, from the newest row of each in a table with a
    ``model`` column (``text_to_image_scores``), by the one rule: intervals apart the way the claim says -> holds,
    apart the other way -> does not hold; overlapping -> undecided. E.g. a distilled student against its teacher,
    or a fine-tuned model against what it was fine-tuned from."""
    newest = table.groupby("model").tail(1).set_index("model")
    missing = [name for name in (model, other) if name not in newest.index]
    if missing:
        raise ValueError(f"no scores recorded for {', '.join(missing)}: score them first (ldm-lab quality "
                         f"--score-shipped NAME, or score_shipped(NAME, reference=...) for a model not shipped).")
    verdicts = []
    for metric, lower in metrics:
        if metric not in newest or newest.loc[[model, other], metric].isna().any():
            continue
        bounds = {name: (newest.loc[name, f"{metric}_ci_low"], newest.loc[name, f"{metric}_ci_high"])
                  for name in (model, other)}
        side = order(bounds[model], bounds[other]) * (-1 if lower else 1)  # +1: ``model`` is better
        side = side if better else -side                                   # +1: the claim's way
        evidence = ", ".join(f"{name} {newest.loc[name, metric]:.3g} [{low:.3g}, {high:.3g}]"
                             for name, (low, high) in bounds.items())
        claim = f"{model} scores {'better' if better else 'worse'} than {other} on {metric}"
        verdicts.append(Verdict(claim, {1: True, -1: False, 0: None}[side], evidence, metric))
    return verdicts


def verdict(table: pd.DataFrame, metric: str, lower_is_better: bool) -> str:
    """The project's one rule: intervals apart -> ours wins / loses; overlapping -> undecided."""
    ours, theirs = (table.set_index("arm").loc[arm] for arm in ARMS)
    low, high = f"{metric}_ci_low", f"{metric}_ci_high"
    ours_better = ours[high] < theirs[low] if lower_is_better else ours[low] > theirs[high]
    theirs_better = theirs[high] < ours[low] if lower_is_better else theirs[low] > ours[high]
    return "ours wins" if ours_better else "diffusers wins" if theirs_better else "undecided (intervals overlap)"


__all__ = ["QualityConfig", "comparison_verdicts", "run_benchmark", "score", "score_shipped", "train_arms", "verdict",
           "GRID_PROMPTS"]
