"""Train and ship the ``fmnist-classifier`` (the Fashion-MNIST FID feature space).

    ldm-lab train-evaluator fmnist-classifier     # 17 min on one thread of a shared 2-core CPU

Trains with ldm-lab's trainer on the 60,000 training images, measures top-1 accuracy on the 10,000 test images,
and writes ``data/checkpoints/fmnist_classifier.safetensors`` (fp16) with its manifest entry. An interrupted run
resumes from its last checkpoint in ``build/runs/fmnist-classifier``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ldm_lab.checkpoints import ManifestEntry, save_checkpoint
from ldm_lab.data import FashionMNIST, load_fashion_mnist
from ldm_lab.device import describe_device, model_device
from ldm_lab.evaluation_models.classifier import (CHECKPOINT_NAME, ClassifierConfig, FashionClassifier, accuracy,
                                                  classification_loss)
from ldm_lab.evaluation_models.retrain import train_to_completion, training_command
from ldm_lab.paths import git_commit
from ldm_lab.training import TrainConfig


@dataclass(frozen=True)
class ClassifierTraining:
    """How the classifier is trained (the options of ``ldm-lab train-evaluator fmnist-classifier``)."""

    steps: int = 2000           # optimizer steps (2000 x 128 = 4.3 epochs)
    batch_size: int = 128
    lr: float = 2e-3
    threads: int = 1            # CPU threads (the machine may be shared)
    device: str | None = None   # cuda, mps or cpu (None: the best available)
    seed: int = 0


def train_classifier(options: ClassifierTraining = ClassifierTraining()) -> ManifestEntry:
    """Train, measure, and ship (only a run that reached its last step)."""
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    config = ClassifierConfig()
    train_config = TrainConfig(steps=options.steps, batch_size=options.batch_size, lr=options.lr, warmup_steps=100,
                               weight_decay=1e-4, min_lr_ratio=0.01, checkpoint_every=500, log_every=50,
                               seed=options.seed, device=options.device)
    result, seconds = train_to_completion(FashionClassifier(config), classification_loss, FashionMNIST("train"),
                                          train_config, CHECKPOINT_NAME)
    test_accuracy = accuracy(result.model, *load_fashion_mnist("test"))
    print(f"test accuracy {test_accuracy:.4f} after {seconds:.0f} s")
    entry = ManifestEntry(
        file="fmnist_classifier.safetensors", sha256="", size_bytes=0,
        command=training_command(CHECKPOINT_NAME, options), git_commit=git_commit(),
        data="Fashion-MNIST train (60,000) -> measured on test (10,000)",
        metrics={"test_accuracy": round(test_accuracy, 4)}, config=dataclasses.asdict(config),
        training_seconds=round(seconds, 1), device=describe_device(model_device(result.model)))
    return save_checkpoint(CHECKPOINT_NAME, result.model.state_dict(), entry)
