"""A distilled student as a shipped file: its U-Net alone (fp16 safetensors, ~half the teacher's file), with a
manifest entry naming the shipped teacher whose first stage and text tower it shares, and that teacher's SHA-256
(a teacher retrained since would hand the student another text embedding, so loading refuses it).

    export_student("runs/add-distillation-only", "lab-emoji-turbo", command="ldm-lab distill ...")
    student = load_student("lab-emoji-turbo")          # ldm_lab.distill.run.load_student takes the name too
"""

from __future__ import annotations

from pathlib import Path

import torch

from ldm_lab.checkpoints import CheckpointError, ManifestEntry, load_checkpoint, read_manifest, save_checkpoint
from ldm_lab.device import resolve_device
from ldm_lab.distill.config import DistillConfig, read_record
from ldm_lab.distill.student import build_student, freeze_all_but_unet
from ldm_lab.models import LatentDiffusion
from ldm_lab.names import unknown_name_error
from ldm_lab.paths import git_commit
from ldm_lab.shipping.export import shipped_file
from ldm_lab.shipping.load import load_trained
from ldm_lab.tasks.runs import RunLoader
from ldm_lab.training import read_metrics
from ldm_lab.training.checkpoint import EMA_FILE, latest_checkpoint, load_file_checked, read_trainer_state

UNET = "unet."   # the shipped file holds the student's U-Net under this prefix, nothing else


def is_shipped_student(reference: str | Path, folder: Path | None = None) -> bool:
    """Whether ``reference`` names a shipped student (rather than a run directory)."""
    entry = read_manifest(folder).get(str(reference))
    return not Path(reference).is_dir() and entry is not None and entry.teacher is not None


def export_student(run_dir: str | Path, name: str, command: str, device_words: str,
                   folder: Path | None = None) -> ManifestEntry:
    """Ship the newest checkpoint's student U-Net (its EMA weights) of the distillation ``run_dir`` under ``name``;
    its teacher must be a shipped model (distill.json names it). ``command`` reproduces it; ``device_words`` says
    where it trained (the run's CPU minutes are added)."""
    teacher, config = read_record(run_dir)
    manifest = read_manifest(folder)
    if teacher not in manifest:
        raise CheckpointError(f"{run_dir} was distilled from {teacher!r}, which is not a shipped model: ship the "
                              "teacher first, or distil from a shipped one (e.g. lab-emoji).")
    facts = run_facts(run_dir)   # raises when there is no checkpoint yet
    weights = load_file_checked(latest_checkpoint(Path(run_dir)) / EMA_FILE,
                                "Ship an earlier checkpoint, or resume the run.")
    entry = ManifestEntry(
        file=shipped_file(name), sha256="", size_bytes=0, command=command, git_commit=git_commit(),
        data=f"{config.dataset} training images and captions (the student's noised inputs)",
        metrics={key: round(value, 5) for key, value in facts.items() if key not in ("updates", "train_wall_s")},
        config={"distill": config.to_dict()}, training_seconds=round(facts["train_wall_s"], 1),
        device=f"{device_words}; {facts['train_cpu_min']:.0f} CPU minutes", steps=facts["updates"],
        fine_tuned_from=f"{teacher} (shipped, {manifest[teacher].steps} steps)", teacher=teacher,
        teacher_sha256=manifest[teacher].sha256)
    return save_checkpoint(name, {k: v for k, v in weights.items() if k.startswith(UNET)}, entry, folder)


def run_facts(run_dir: str | Path, window: int = 100) -> dict[str, float]:
    """What a distillation run's newest checkpoint cost and how its terms pulled: student updates, training CPU
    minutes, wall seconds, and over its last ``window`` updates the mean training loss, the norm of each weighted
    term's gradient on the student (``grad_norm_adversarial``, ``grad_norm_distillation``) and the heads' loss per
    head (hinge + gamma R1; 2.0: no better than chance). A shipped student's come from its manifest entry."""
    if is_shipped_student(run_dir):
        entry = _entry(str(run_dir), None)
        return {"updates": entry.steps, **entry.metrics}
    checkpoint = latest_checkpoint(Path(run_dir))
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet: let its `ldm-lab distill` run reach one.")
    meta = read_trainer_state(checkpoint)[1]
    heads = len(DistillConfig.from_dict(meta["config"]).discriminator.layers)
    recent = [r for r in read_metrics(Path(run_dir)) if meta["step"] - window < r["step"] <= meta["step"]]
    facts = {"updates": meta["step"], "train_cpu_min": meta["cpu_s"] / 60, "train_wall_s": meta["elapsed_s"]}
    for key, name, scale in (("loss", "train_loss_final", 1), ("grad_norm_adversarial", "grad_norm_adversarial", 1),
                             ("grad_norm_distillation", "grad_norm_distillation", 1),
                             ("discriminator", "discriminator_loss_per_head", heads)):
        values = [r[key] for r in recent if key in r]
        if values:
            facts[name] = sum(values) / len(values) / scale
    return facts


def shipped_student_config(name: str, folder: Path | None = None) -> DistillConfig:
    """The :class:`DistillConfig` the shipped student ``name`` was distilled with."""
    return DistillConfig.from_dict(_entry(name, folder).config["distill"])


def load_shipped_student(name: str, device: str | torch.device = "cpu", folder: Path | None = None,
                         loader: RunLoader = load_trained) -> LatentDiffusion:
    """The shipped student ``name``: its teacher (shipped, checked unchanged) rebuilt as the student, with the
    shipped U-Net, in eval mode."""
    entry = _entry(name, folder)
    teacher_entry = read_manifest(folder).get(entry.teacher)
    if teacher_entry is None or teacher_entry.sha256 != entry.teacher_sha256:
        raise CheckpointError(
            f"{name!r} was distilled from another {entry.teacher!r} than the one shipped now (its SHA-256 changed): "
            f"its text embeddings and latents would not be the ones it learned. Distil it again from the new "
            f"teacher ({entry.command}), or restore the old teacher (git checkout data/checkpoints).")
    config = DistillConfig.from_dict(entry.config["distill"])
    teacher = loader(entry.teacher, device, ema=True).model
    student = build_student(teacher, config.objective.zero_terminal_snr, pretrained=True)
    state, _ = load_checkpoint(name, folder)
    student.unet.load_state_dict({k.removeprefix(UNET): v for k, v in state.items()})
    return freeze_all_but_unet(student.to(resolve_device(device))).requires_grad_(False).eval()


def _entry(name: str, folder: Path | None) -> ManifestEntry:
    entry = read_manifest(folder).get(name)
    if entry is None or entry.teacher is None:
        students = [n for n, e in read_manifest(folder).items() if e.teacher is not None]
        raise CheckpointError(str(unknown_name_error("shipped student", name, students,
                                                     advice="Or pass the --out folder of an `ldm-lab distill` run.")))
    return entry


__all__ = ["export_student", "is_shipped_student", "load_shipped_student", "run_facts", "shipped_student_config"]
