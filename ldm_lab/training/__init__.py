"""One trainer for every ldm-lab model.

    from ldm_lab.training import TrainConfig, train

    result = train(model, loss_fn, dataset, TrainConfig(steps=2000, batch_size=64, lr=2e-4, ema_decay=0.999),
                   run_dir="runs/classifier", resume=True)
    result.ema_model  # or load later: load_weights(model, "runs/classifier", ema=True)

``loss_fn(model, batch) -> scalar Tensor``, or a task object with ``loss(model, batch)`` and optionally
``sample(model) -> images in [-1, 1]`` for periodic sample grids. Several GPUs: run the same script with
``accelerate launch --multi_gpu --num_processes N script.py``; several CPU processes: ``torchrun --nproc_per_node N``.
"""

from ldm_lab.training.checkpoint import CheckpointMismatchError, latest_checkpoint, list_checkpoints, load_weights
from ldm_lab.training.config import TrainConfig
from ldm_lab.training.data import SeededBatchSampler
from ldm_lab.training.ema import EMA
from ldm_lab.training.images import save_image_grid
from ldm_lab.training.schedule import lr_at, warmup_cosine_lr
from ldm_lab.training.task import LossFunctionTask, SamplingTask, TrainingTask
from ldm_lab.training.trainer import Trainer, TrainResult, build_optimizer, read_metrics, train

__all__ = [
    "EMA", "CheckpointMismatchError", "LossFunctionTask", "SamplingTask", "SeededBatchSampler", "TrainConfig",
    "TrainResult", "Trainer", "TrainingTask", "build_optimizer", "latest_checkpoint", "list_checkpoints",
    "load_weights", "lr_at", "read_metrics", "save_image_grid", "train", "warmup_cosine_lr",
]
