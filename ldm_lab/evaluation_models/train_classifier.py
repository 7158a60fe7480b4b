"""Train and ship the ``fmnist-classifier`` (the Fashion-MNIST FID feature space).

    python -m ldm_lab.evaluation_models.train_classifier     # 17 min on one thread of a shared 2-core CPU

Trains with ldm-lab's trainer on the 60,000 training images, measures top-1 accuracy on the 10,000 test images,
and writes ``data/checkpoints/fmnist_classifier.safetensors`` (fp16) with its manifest entry. An interrupted run
resumes from its last checkpoint in ``build/runs/fmnist-classifier``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from ldm_lab.checkpoints import ManifestEntry, save_checkpoint
from ldm_lab.data import FashionMNIST, load_fashion_mnist
from ldm_lab.device import describe_device, model_device
from ldm_lab.evaluation_models.classifier import (CHECKPOINT_NAME, ClassifierConfig, FashionClassifier, accuracy,
                                                  classification_loss)
from ldm_lab.evaluation_models.retrain import train_to_completion, training_command
from ldm_lab.paths import git_commit
from ldm_lab.training import TrainConfig

MODULE = "ldm_lab.evaluation_models.train_classifier"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps (2000 x 128 = 4.3 epochs)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the machine may be shared)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> ManifestEntry:
    """Train, measure, and ship (only a run that reached its last step)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = ClassifierConfig()
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=100,
                               weight_decay=1e-4, min_lr_ratio=0.01, checkpoint_every=500, log_every=50,
                               seed=args.seed, device=args.device)
    result, seconds = train_to_completion(FashionClassifier(config), classification_loss, FashionMNIST("train"),
                                          train_config, CHECKPOINT_NAME)
    test_accuracy = accuracy(result.model, *load_fashion_mnist("test"))
    print(f"test accuracy {test_accuracy:.4f} after {seconds:.0f} s")
    entry = ManifestEntry(
        file="fmnist_classifier.safetensors", sha256="", size_bytes=0, command=training_command(MODULE, argv),
        git_commit=git_commit(), data="Fashion-MNIST train (60,000) -> measured on test (10,000)",
        metrics={"test_accuracy": round(test_accuracy, 4)}, config=dataclasses.asdict(config),
        training_seconds=round(seconds, 1), device=describe_device(model_device(result.model)))
    return save_checkpoint(CHECKPOINT_NAME, result.model.state_dict(), entry)


if __name__ == "__main__":
    main()
