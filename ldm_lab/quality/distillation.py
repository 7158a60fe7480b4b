"""Few-step students scored against their teacher (ADD §4, Fig. 7, Tab. 1): KID, FID and CLIP score with intervals
against the number of network evaluations (NFE), as rows of ``data/results/distillation_scores.csv``.

    teacher_scores(steps=4)                        # lab-emoji, DPM-Solver++ at 4 steps with CFG: 8 NFE
    student_scores("runs/add-distillation-only", steps=1)   # a student at 1 step, its own sampler: 1 NFE

The rows are :func:`~ldm_lab.quality.benchmark.model_scores`' (354 held-out captions x 3 seeds, lab-clip space) with
what the comparison needs: NFE (a guided teacher step evaluates the U-Net twice, the student never guides), the
run's method and ablation arm, its student updates and training CPU minutes. ``comparison_verdicts`` reads them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from ldm_lab.device import resolve_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.distill.arms import ARMS, REFERENCE, arm_of
from ldm_lab.distill.run import load_student, load_teacher, student_config
from ldm_lab.distill.shipped import run_facts
from ldm_lab.metrics import extract_features, lab_clip_encoder
from ldm_lab.models import LatentDiffusion
from ldm_lab.paths import git_commit, results_dir
from ldm_lab.quality.benchmark import (COMPARED_METRICS, FEATURE_SPACE, append_row, comparison_verdicts,
                                      held_out_captions, model_scores, real_row)
from ldm_lab.quality.arms import SCORED_SAMPLING
from ldm_lab.tasks.diffusion import generate

DISTILLATION_TABLE = "distillation_scores.csv"


def teacher_scores(steps: int, seeds: int = 3, teacher: str | Path = "lab-emoji", name: str | None = None,
                   table_folder: Path | None = None, device: str | torch.device | None = None) -> dict:
    """The teacher at ``steps`` DPM-Solver++(2M) steps with its scored guidance (NFE = 2 x steps), added to the
    distillation table. ADD's Fig. 7 axis: 1, 2, 4, 8, 25, 50 steps."""
    model = load_teacher(teacher, resolve_device(device))
    settings = SamplingSettings(steps=steps, guidance_scale=SCORED_SAMPLING.guidance_scale)
    nfe = steps * (2 if settings.guidance_scale != 1.0 else 1)
    row = model_scores(model, name or row_name("teacher", steps), seeds, settings)
    return _record(row | {"role": "teacher", "method": "diffusion", "nfe": nfe}, table_folder)


def real_scores(seeds: int = 3, table_folder: Path | None = None, num_resamples: int = 200) -> dict:
    """Real-vs-real: as many training-split emoji as a scored model draws (354 x ``seeds``) against the same
    held-out set, scored alike: the floor of KID and FID at this N (its CLIP score reads high: lab-clip was
    trained on these pairs). Added to the distillation table with NFE 0."""
    real, captions = held_out_captions(seeds)
    row = real_row(len(captions), extract_features(real, FEATURE_SPACE), lab_clip_encoder(), num_resamples)
    return _record({"model": row.pop("arm"), **row, "role": "real", "nfe": 0, "seeds": seeds,
                    "feature_space": FEATURE_SPACE, "git_commit": git_commit()}, table_folder)


def student_scores(reference: str | Path, steps: int, seeds: int = 3, name: str | None = None,
                   table_folder: Path | None = None, device: str | torch.device | None = None) -> dict:
    """The newest (EMA) student of a distillation run, or a shipped student, at ``steps`` steps of its own sampler
    (NFE = steps), with the run's method, arm and training facts (updates, CPU minutes, how its loss terms pulled:
    :func:`~ldm_lab.distill.shipped.run_facts`), added to the distillation table."""
    config, facts = student_config(reference), run_facts(reference)
    row = model_scores(load_student(reference, resolve_device(device)), name or row_name(reference, steps), seeds,
                       config.objective.sampling(steps))
    return _record(row | {"role": "student", "method": config.method, "arm": arm_of(config), "nfe": steps,
                          "batch_size": config.train.batch_size, **facts}, table_folder)


def read_distillation_table(table_folder: Path | None = None) -> pd.DataFrame:
    """The distillation table, the newest row of each model (an error saying how to fill it when missing)."""
    path = (table_folder or results_dir()) / DISTILLATION_TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist yet: score a teacher and a student first (`ldm-lab quality "
                                "--score-teacher 1 2 4`, `ldm-lab quality --score-student lab-emoji-turbo`).")
    return pd.read_csv(path).groupby("model").tail(1).reset_index(drop=True)


def within_interval(table: pd.DataFrame, model: str, other: str) -> list[str]:
    """Per metric, whether ``model`` comes within ``other``'s interval (not decided worse by the one rule) or by how
    much it misses, e.g. the 4-step student against the teacher at 50 steps."""
    rows, lower_is_better = table.set_index("model"), dict(COMPARED_METRICS)
    lines = []
    for verdict in comparison_verdicts(table, model, other):             # the claim: ``model`` scores worse
        m, (a, b) = verdict.metric, (rows.loc[model], rows.loc[other])
        if verdict.holds:
            worse, better = (a, b) if lower_is_better[m] else (b, a)
            gap = worse[f"{m}_ci_low"] - better[f"{m}_ci_high"]
            reading = f"NOT within: worse, the intervals {gap:.3g} apart"
        else:
            reading = "better, intervals apart" if verdict.holds is False else "within (intervals overlap)"
        lines.append(f"{m}: {verdict.evidence} -> {reading}")
    return lines


def row_name(reference: str | Path, steps: int) -> str:
    """A student's row in the table: its run folder's (or shipped) name and steps, e.g. "lab-emoji-turbo 1 step"
    (the ablation's runs are named after their arms)."""
    return f"{Path(reference).name} {steps} step{'s' * (steps > 1)}"


def run_of(model: str) -> str:
    """The run (or shipped) name of a student's row, the inverse of :func:`row_name`: "lcm 4 steps" -> "lcm"."""
    return model.rsplit(" ", 2)[0]


def ablation_table(table: pd.DataFrame, steps: int = 1) -> pd.DataFrame:
    """Tab. 1 in miniature: each arm's scores at ``steps`` steps with intervals (its run folder named after the
    arm), its training cost, the paper's FID for the row, and, by the one rule, whether it scores worse than the
    reference arm of its row (the paper's claim for rows c and d; row f's is open) per metric."""
    rows = table.set_index("model")
    out = []
    for name, arm in ARMS.items():
        if row_name(name, steps) not in rows.index:
            continue
        row, reference = rows.loc[row_name(name, steps)], REFERENCE.get(arm.row, "add")
        record = {"row": arm.row, "arm": arm.label, "updates": int(row["updates"]),
                  "train CPU min": round(float(row["train_cpu_min"]), 1),
                  **{metric: f"{row[metric]:.3g} [{row[f'{metric}_ci_low']:.3g}, {row[f'{metric}_ci_high']:.3g}]"
                     for metric in ("kid", "fid", "clip_score")},
                  "paper FID": arm.paper_fid, "compared with": "-", "worse than it?": "(the row's reference)"}
        if name != reference and row_name(reference, steps) in rows.index:
            verdicts = comparison_verdicts(table, row_name(name, steps), row_name(reference, steps))
            record["compared with"] = reference
            record["worse than it?"] = ", ".join(f"{v.metric} {v.word}" for v in verdicts)
        out.append(record)
    return pd.DataFrame(out).set_index("arm")


def timed_images(model: LatentDiffusion, prompts: Sequence[str], settings: SamplingSettings) -> tuple[Tensor, float]:
    """One image per prompt drawn with ``settings`` (its seed), and the wall seconds per image it took."""
    start = time.perf_counter()
    images = generate(model, prompts=list(prompts), settings=settings)
    return images, (time.perf_counter() - start) / len(prompts)


def _record(row: dict, table_folder: Path | None) -> dict:
    append_row((table_folder or results_dir()) / DISTILLATION_TABLE, row)
    return row


__all__ = ["DISTILLATION_TABLE", "ablation_table", "read_distillation_table",
           "real_scores", "row_name", "run_of", "student_scores", "teacher_scores", "timed_images", "within_interval"]
