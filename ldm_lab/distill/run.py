"""Distillation runs (ADD, or LCM as its baseline): distil a trained teacher into a few-step student in a run
directory, and load the student back.

    distill("lab-emoji", "runs/add-emoji", DistillConfig())        # ``ldm-lab distill lab-emoji --out ...``
    student = load_student("runs/add-emoji")                       # its EMA weights, in eval mode
    images = generate(student, prompts=["red apple"], settings=student_sampling(steps=1, seed=0))

The command (one thread; 2,000 updates at batch 8, about 40 CPU minutes; metrics.jsonl records elapsed_s and
cpu_s; interrupt and continue with --resume):

    OMP_NUM_THREADS=1 ldm-lab distill lab-emoji --out runs/add-emoji --threads 1 --device cpu

    run_dir/
        distill.json   the teacher's reference and the DistillConfig (a resume must match it)
        metrics.jsonl, samples/, checkpoints/step_*/ (model.safetensors: student + heads; ema.safetensors: student)
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from ldm_lab.data.materialise import training_dataset
from ldm_lab.device import model_device, resolve_device
from ldm_lab.distill.add import ADDModels, PhaseTimer
from ldm_lab.distill.config import DISTILL_STEPS, RECORD_FILE, DistillConfig, read_record
from ldm_lab.distill.discriminator import FeatureNetwork, build_heads, lab_clip_feature_network
from ldm_lab.distill.lcm import LCMModels
from ldm_lab.distill.loop import Distiller, DistillResult
from ldm_lab.distill.shipped import is_shipped_student, load_shipped_student, shipped_student_config
from ldm_lab.distill.student import build_student, freeze_all_but_unet
from ldm_lab.json_files import read_json
from ldm_lab.models import LatentDiffusion
from ldm_lab.profiles import current_profile
from ldm_lab.shipping.load import load_trained
from ldm_lab.tasks.runs import RunLoader
from ldm_lab.training.checkpoint import EMA_FILE, MODEL_FILE, latest_checkpoint, load_checked, run_dir_lock

RESUMABLE_CHANGES = {"steps", "time_limit_s", "device", "checkpoint_every", "keep_checkpoints", "log_every",
                     "sample_every", "num_workers"}  # train fields a resumed run may change without a warning


def load_teacher(teacher: str | Path | LatentDiffusion, device: torch.device,
                 loader: RunLoader = load_trained) -> LatentDiffusion:
    """The frozen teacher: a trained text-to-image model (a run directory or a shipped name, e.g. lab-emoji)."""
    model = teacher if isinstance(teacher, LatentDiffusion) else loader(teacher, device, ema=True).model
    if not isinstance(model, LatentDiffusion) or "caption" not in model.condition_keys:
        raise ValueError(f"{teacher} is not a text-to-image diffusion model; ADD here distils one such as lab-emoji "
                         "(its discriminator is conditioned on the caption).")
    return model.to(device).eval().requires_grad_(False)


def build_models(teacher: LatentDiffusion, config: DistillConfig, features: FeatureNetwork | None = None,
                 timer: PhaseTimer | None = None) -> ADDModels | LCMModels:
    """Teacher + a student initialised from it; for ADD the frozen feature network (lab-clip's tower unless given)
    and fresh heads, for LCM the student's target network."""
    objective = config.objective
    student = build_student(teacher, objective.zero_terminal_snr, objective.pretrained_student)
    if config.method == "lcm":
        return LCMModels(teacher, student, config.lcm, timer)
    features = (features if features is not None else
                lab_clip_feature_network(config.discriminator.layers, model_device(teacher)))
    return ADDModels(teacher, student, features, build_heads(features, config.discriminator), config.add, timer)


def distill(teacher: str | Path | LatentDiffusion, run_dir: str | Path, config: DistillConfig = DistillConfig(), *,
            resume: bool = False, features: FeatureNetwork | None = None, data: Dataset | None = None,
            loader: RunLoader = load_trained) -> DistillResult:
    """Distil ``teacher`` into a student with ADD in ``run_dir`` (``resume``: continue its newest checkpoint).
    ``features`` and ``data`` default to lab-clip's image tower and the config's dataset at the teacher's size."""
    run_dir = Path(run_dir)
    with run_dir_lock(run_dir):
        config = _check_record(run_dir, teacher, config, resume)
        model = load_teacher(teacher, resolve_device(config.train.device), loader)
        models = build_models(model, config, features)
        data = data if data is not None else training_dataset(config.dataset, model.preset.resolution)
        return Distiller(models, data, config, run_dir, resume=resume).fit()


def run_config(*, steps: int | None = None, batch_size: int | None = None, time_limit_s: float | None = None,
               device: str | None = None, student_steps: int | None = None,
               base: DistillConfig = DistillConfig()) -> DistillConfig:
    """``base`` with a command line's overrides; steps default to the profile's (``LDM_LAB_PROFILE``)."""
    train = replace(base.train, steps=steps or DISTILL_STEPS[current_profile()], time_limit_s=time_limit_s,
                    device=device, batch_size=batch_size or base.train.batch_size)
    add = replace(base.add, student_steps=student_steps) if student_steps is not None else base.add
    return replace(base, train=train, add=add)


def _check_record(run_dir: Path, teacher: str | Path | LatentDiffusion, config: DistillConfig,
                  resume: bool) -> DistillConfig:
    """A fresh run writes distill.json; a resumed one must match its objective and networks."""
    path, reference = run_dir / RECORD_FILE, _reference(teacher)
    if not (resume and latest_checkpoint(run_dir) is not None):
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"teacher": reference, "config": config.to_dict()}, indent=1), encoding="utf-8")
        return config
    record = read_json(path, "Restore it from a copy, or distil again into a new --out folder.")
    saved = DistillConfig.from_dict(record["config"])
    if record["teacher"] != reference or saved.objective_key() != config.objective_key():
        raise ValueError(f"{run_dir} distils {record['teacher']} with {saved.objective_key()}; resume it with the same "
                         "teacher and settings (the same --arm), or choose another --out folder.")
    changed = [k for k, v in saved.train.to_dict().items() if k not in RESUMABLE_CHANGES and
               v != config.train.to_dict()[k]]
    if changed:
        warnings.warn(f"resuming with changed settings {changed}: the run continues, but is no longer the same as "
                      "one trained with a single configuration.", stacklevel=3)
    return config


def _reference(teacher: str | Path | LatentDiffusion) -> str:
    return f"<in-memory {teacher.preset.name}>" if isinstance(teacher, LatentDiffusion) else str(teacher)


def load_student(run_dir: str | Path, device: str | torch.device = "cpu", *, ema: bool = True,
                 teacher: LatentDiffusion | None = None, loader: RunLoader = load_trained) -> LatentDiffusion:
    """The newest student of a distillation run, in eval mode: its EMA weights (``ema=False``: the raw ones); or a
    shipped student by name (e.g. lab-emoji-turbo). The teacher named in distill.json gives the architecture (pass
    ``teacher`` for a run distilled from a model in memory). Sample it with its run's
    ``DistillConfig.objective.sampling(steps)`` (:func:`student_config`)."""
    if is_shipped_student(run_dir):
        return load_shipped_student(str(run_dir), device, loader=loader)
    run_dir, device = Path(run_dir), resolve_device(device)
    recorded_teacher, config = read_record(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet: let `ldm-lab distill ... --out {run_dir}` run "
                                "until its first checkpoint (an interrupted run writes one as it stops).")
    if teacher is None and recorded_teacher.startswith("<in-memory"):
        raise ValueError(f"{run_dir} was distilled from a teacher in memory; pass it as teacher=...")
    student = build_student(load_teacher(teacher if teacher is not None else recorded_teacher, device, loader),
                            config.objective.zero_terminal_snr, config.objective.pretrained_student)
    if ema and (checkpoint / EMA_FILE).exists():
        load_checked(student, checkpoint / EMA_FILE)
    else:
        weights = load_file(str(checkpoint / MODEL_FILE), device=str(device))
        student.load_state_dict({k.removeprefix("student."): v for k, v in weights.items() if k.startswith("student.")})
    return freeze_all_but_unet(student).requires_grad_(False).eval()


def student_config(run_dir: str | Path) -> DistillConfig:
    """The :class:`DistillConfig` an ``ldm-lab distill`` run (or a shipped student) was trained with (its
    ``objective.sampling(steps)`` is how its student draws)."""
    return shipped_student_config(str(run_dir)) if is_shipped_student(run_dir) else read_record(run_dir)[1]
