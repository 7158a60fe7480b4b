"""Train and ship ``lab-clip`` (CLIP score and the lab-clip FID feature space).

    python -m ldm_lab.evaluation_models.train_lab_clip       # 12 min on one thread of a shared 2-core CPU

Trains open_clip's CLIP (sizes: ``LabClipConfig``) contrastively with ldm-lab's trainer on emoji train + shapes
train captions at 64x64, measures image->text and text->image top-1/top-5 retrieval on emoji val and shapes val,
and writes ``data/checkpoints/lab_clip.safetensors`` (fp16) with its manifest entry. An interrupted run resumes
from its last checkpoint in ``build/runs/lab-clip``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

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

MODULE = "ldm_lab.evaluation_models.train_lab_clip"
NUM_SHAPES_VAL = 500


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=700, help="optimizer steps (700 x 128 = 9.5 epochs)")
    parser.add_argument("--batch-size", type=int, default=128, help="pairs per step: each caption's negatives")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-shapes", type=int, default=6000, help="shapes train scenes next to 3,432 emoji")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the machine may be shared)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def validation_scores(model: torch.nn.Module, name: str, pairs: CaptionedImages) -> dict[str, float]:
    """Retrieval accuracies on one validation set, keys prefixed with its name."""
    images = pairs.images.float() / 127.5 - 1
    scores = retrieval_accuracy(embed_images(model, images), embed_texts(model, pairs.captions), pairs.captions)
    return {f"{name}_{key}": round(value, 4) for key, value in scores.items()}


def main(argv: list[str] | None = None) -> ManifestEntry:
    """Train, measure, and ship (only a run that reached its last step)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = LabClipConfig()
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=50,
                               weight_decay=0.1, betas=(0.9, 0.98), min_lr_ratio=0.02, checkpoint_every=100,
                               log_every=20, seed=args.seed, device=args.device)
    result, seconds = train_to_completion(build_lab_clip(config), contrastive_loss, training_pairs(args.num_shapes),
                                          train_config, CHECKPOINT_NAME)
    model = result.model.eval()
    metrics = {**validation_scores(model, "emoji_val", emoji_pairs("val")),
               **validation_scores(model, "shapes_val", shapes_pairs("val", NUM_SHAPES_VAL))}
    print(f"retrieval {metrics} after {seconds:.0f} s")
    entry = ManifestEntry(
        file="lab_clip.safetensors", sha256="", size_bytes=0, command=training_command(MODULE, argv),
        git_commit=git_commit(),
        data=f"emoji train (3,432) + shapes train (first {args.num_shapes}), 64x64 -> measured on emoji val (354) "
             f"and shapes val (first {NUM_SHAPES_VAL}); chance top-1 is 1/354 and 1/{NUM_SHAPES_VAL}",
        metrics=metrics, config=dataclasses.asdict(config), training_seconds=round(seconds, 1),
        device=describe_device(model_device(model)))
    return save_checkpoint(CHECKPOINT_NAME, model.state_dict(), entry)


if __name__ == "__main__":
    main()
