"""Train and ship ``lab-clip`` (CLIP score and the lab-clip FID feature space).

    ldm-lab train-evaluator lab-clip       # 12 min on one thread of a shared 2-core CPU

Trains open_clip's CLIP (sizes: ``LabClipConfig``) contrastively with ldm-lab's trainer on emoji train + shapes
train captions at 64x64, measures image->text and text->image top-1/top-5 retrieval on emoji val and shapes val,
and writes ``data/checkpoints/lab_clip.safetensors`` (fp16) with its manifest entry. An interrupted run resumes
from its last checkpoint in ``build/runs/lab-clip``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ldm_lab.checkpoints import ManifestEntry, save_checkpoint
from ldm_lab.device import describe_device, model_device
from ldm_lab.evaluation_models.lab_clip import (CHECKPOINT_NAME, LabClipConfig, build_lab_clip, contrastive_loss,
                                                embed_images, embed_texts)
from ldm_lab.evaluation_models.pairs import CaptionedImages, emoji_pairs, shapes_pairs, training_pairs
from ldm_lab.evaluation_models.retrain import train_to_completion, training_command
from ldm_lab.metrics.retrieval import retrieval_accuracy
from ldm_lab.paths import git_commit
from ldm_lab.training import TrainConfig

NUM_SHAPES_VAL = 500


@dataclass(frozen=True)
class LabClipTraining:
    """How lab-clip is trained (the options of ``ldm-lab train-evaluator lab-clip``)."""

    steps: int = 700            # optimizer steps (700 x 128 = 9.5 epochs)
    batch_size: int = 128       # pairs per step: each caption's negatives
    lr: float = 1e-3
    num_shapes: int = 6000      # shapes train scenes next to the 3,432 emoji
    threads: int = 1            # CPU threads (the machine may be shared)
    device: str | None = None   # cuda, mps or cpu (None: the best available)
    seed: int = 0


def validation_scores(model: torch.nn.Module, name: str, pairs: CaptionedImages) -> dict[str, float]:
    """Retrieval accuracies on one validation set, keys prefixed with its name."""
    images = pairs.images.float() / 127.5 - 1
    scores = retrieval_accuracy(embed_images(model, images), embed_texts(model, pairs.captions), pairs.captions)
    return {f"{name}_{key}": round(value, 4) for key, value in scores.items()}


def train_lab_clip(options: LabClipTraining = LabClipTraining()) -> ManifestEntry:
    """Train, measure, and ship (only a run that reached its last step)."""
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    config = LabClipConfig()
    train_config = TrainConfig(steps=options.steps, batch_size=options.batch_size, lr=options.lr, warmup_steps=50,
                               weight_decay=0.1, betas=(0.9, 0.98), min_lr_ratio=0.02, checkpoint_every=100,
                               log_every=20, seed=options.seed, device=options.device)
    result, seconds = train_to_completion(build_lab_clip(config), contrastive_loss,
                                          training_pairs(options.num_shapes), train_config, CHECKPOINT_NAME)
    model = result.model.eval()
    metrics = {**validation_scores(model, "emoji_val", emoji_pairs("val")),
               **validation_scores(model, "shapes_val", shapes_pairs("val", NUM_SHAPES_VAL))}
    print(f"retrieval {metrics} after {seconds:.0f} s")
    entry = ManifestEntry(
        file="lab_clip.safetensors", sha256="", size_bytes=0, command=training_command(CHECKPOINT_NAME, options),
        git_commit=git_commit(),
        data=f"emoji train (3,432) + shapes train (first {options.num_shapes}), 64x64 -> measured on emoji val (354) "
             f"and shapes val (first {NUM_SHAPES_VAL}); chance top-1 is 1/354 and 1/{NUM_SHAPES_VAL}",
        metrics=metrics, config=dataclasses.asdict(config), training_seconds=round(seconds, 1),
        device=describe_device(model_device(model)))
    return save_checkpoint(CHECKPOINT_NAME, model.state_dict(), entry)
