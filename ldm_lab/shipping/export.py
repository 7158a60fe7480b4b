"""From a finished run to a shipped file: the EMA weights inference needs, fp16, with a manifest entry that says
how they came to be (command, commit, data, config, steps, seconds, device) and how good they are (the final
training loss and cheap held-out scores)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from ldm_lab.checkpoints import (CheckpointError, ManifestEntry, load_checkpoint, read_manifest, save_checkpoint,
                                 update_manifest)
from ldm_lab.data import DATASETS, build_dataset, held_out_batches
from ldm_lab.data.materialise import describe_training_data
from ldm_lab.device import model_device
from ldm_lab.metrics import psnr, ssim
from ldm_lab.nn.autoencoder import Autoencoder
from ldm_lab.paths import checkpoints_dir, git_commit
from ldm_lab.shipping.load import inference_weights
from ldm_lab.tasks.runs import Run, load_run, run_lineage
from ldm_lab.tasks.targets import AutoencoderTarget, TrainTarget
from ldm_lab.training import read_metrics
from ldm_lab.training.checkpoint import checkpoint_path, read_trainer_state
from ldm_lab.training.data import move_to_device
from ldm_lab.training.trainer import CONFIG_FILE

HELD_OUT_ITEMS = 256   # validation items the shipped scores are measured on
LATENT_SPACE = tuple(f"{part}." for part in Autoencoder.LATENT_SPACE_PARTS)  # a first stage's latent-space weights


def shipped_file(name: str) -> str:
    """``lab-ldm-8`` -> ``lab_ldm_8.safetensors``."""
    return f"{name.replace('-', '_')}.safetensors"


def target_held_out(target: TrainTarget, batch_size: int = 64) -> Iterator[dict]:
    """``HELD_OUT_ITEMS`` held-out items (all, if the split is smaller), drawn as every evaluation draws them."""
    return held_out_batches(target.dataset, target.resolution, held_out_count(target), batch_size)


@torch.no_grad()
def reconstruction_scores(autoencoder: nn.Module, target: AutoencoderTarget) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of the held-out reconstructions (posterior mean for KL)."""
    device = model_device(autoencoder)
    originals, reconstructions = [], []
    for batch in target_held_out(target):
        images = batch["image"].to(device)
        reconstructions.append(autoencoder(images, sample_posterior=False).reconstruction.clamp(-1, 1).cpu())
        originals.append(images.cpu())
    x, y = torch.cat(originals), torch.cat(reconstructions)
    return {"val_psnr": float(psnr(x, y).mean()), "val_ssim": float(ssim(x, y).mean())}


@torch.no_grad()
def held_out_loss(run: Run) -> float:
    """The training objective, averaged over the held-out items (fixed noise and timesteps: seed 0)."""
    device, task = model_device(run.model), run.target.build_task()
    total, count = 0.0, 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        for batch in target_held_out(run.target):
            total += float(task.loss(run.model, move_to_device(batch, device))) * len(batch["image"])
            count += len(batch["image"])
    return total / count


def held_out_count(target: TrainTarget) -> int:
    return min(HELD_OUT_ITEMS, len(build_dataset(target.dataset, "val", target.resolution)))


def held_out_scores(run: Run) -> dict[str, float]:
    """PSNR/SSIM for a first stage; the held-out denoising loss for a diffusion model."""
    if isinstance(run.target, AutoencoderTarget):
        return reconstruction_scores(run.model.autoencoder, run.target)
    return {"val_loss": held_out_loss(run)}


def training_record(run_dir: Path, step: int) -> tuple[dict, float | None, float]:
    """The run's train config, its training loss logged last up to ``step`` (None before the first log line),
    and its wall seconds up to ``step`` (from that checkpoint)."""
    train_config = json.loads((run_dir / CONFIG_FILE).read_text())["train"]
    losses = [record["loss"] for record in read_metrics(run_dir) if record["step"] <= step]
    _, state = read_trainer_state(checkpoint_path(run_dir, step))
    return train_config, losses[-1] if losses else None, state["elapsed_s"]


def json_fields(config) -> dict:
    """A config dataclass as JSON-ready fields (enums as their values, tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=lambda value: getattr(value, "value", str(value))))


def describe_data(target: TrainTarget, count: int) -> str:
    held_out = DATASETS[target.dataset].held_out_split
    return (f"{describe_training_data(target.dataset, target.resolution)} -> measured on the first {count} "
            f"{target.dataset} {held_out} items")


def export_run(run_dir: Path, command: str, device_words: str, folder: Path | None = None,
               device: str | torch.device = "cpu") -> ManifestEntry:
    """Ship the newest checkpoint of ``run_dir`` (its EMA weights when kept) into ``folder`` (default
    data/checkpoints) under its target's name; a latent model's entry names its first stage's shipped file, a
    fine-tuned model's what it was fine-tuned from (its steps and seconds count that model's as well).
    ``command`` reproduces it, ``device_words`` says where it trained; ``device`` runs the held-out scores."""
    run = load_run(run_dir, device)
    target, name = run.target, run.target.name
    train_config, loss, seconds = training_record(run_dir, run.step)
    lineage = run_lineage(run_dir)  # a fine-tuned model's steps and seconds count its source's too
    first_stage = target.first_stage
    metrics = {"train_loss_final": round(loss, 5)} if loss is not None else {}
    metrics |= {key: round(value, 4) for key, value in held_out_scores(run).items()}
    model_config = target.autoencoder if isinstance(target, AutoencoderTarget) else target.model
    entry = ManifestEntry(
        file=shipped_file(name), sha256="", size_bytes=0, command=command,
        git_commit=git_commit(), data=describe_data(target, held_out_count(target)),
        metrics=metrics, config={"model": json_fields(model_config), "train": train_config},
        training_seconds=round(seconds + (lineage.training_seconds if lineage else 0), 1), device=device_words,
        target=name, steps=run.step + (lineage.steps if lineage else 0), first_stage=first_stage,
        first_stage_sha256=read_manifest(folder)[first_stage].sha256 if first_stage else None,
        fine_tuned_from=lineage.description if lineage else None)
    weights = inference_weights(target, run.model)
    previous = shipped_weights(name, folder) if isinstance(target, AutoencoderTarget) else None
    entry = save_checkpoint(name, weights, entry, folder)
    if previous is not None and encodes_alike(previous[0], weights):
        repoint_dependents(name, previous[1].sha256, entry.sha256, folder)
    return entry


def shipped_weights(name: str, folder: Path | None = None) -> tuple[dict[str, Tensor], ManifestEntry] | None:
    """The weights and entry shipped under ``name`` now (None: nothing shipped, or its file is missing or changed)."""
    if name not in read_manifest(folder):
        return None
    try:
        return load_checkpoint(name, folder)
    except CheckpointError:
        return None


def encodes_alike(old: dict[str, Tensor], new: dict[str, Tensor]) -> bool:
    """Whether two first stages' weights define one latent space: the same encoder and quant conv, compared in
    the shipped fp16 (a decoder trained behind a frozen encoder changes neither)."""
    keys = [key for key in new if key.startswith(LATENT_SPACE)]
    return bool(keys) and all(key in old and old[key].shape == new[key].shape
                              and torch.equal(old[key], new[key].to(old[key].dtype).cpu()) for key in keys)


def repoint_dependents(first_stage: str, old_sha256: str, new_sha256: str, folder: Path | None = None) -> list[str]:
    """Record first stage ``first_stage``'s new file (``new_sha256``) for the models trained on its old one. Only
    for a new file that encodes alike (:func:`encodes_alike`): their latents decode through it. Returns their
    names."""
    dependents = {name: dataclasses.replace(entry, first_stage_sha256=new_sha256)
                  for name, entry in read_manifest(folder).items()
                  if entry.first_stage == first_stage and entry.first_stage_sha256 == old_sha256}
    if dependents:
        update_manifest(dependents, folder or checkpoints_dir())
    return sorted(dependents)
