"""A tiny training run that exercises the whole trainer: checkpoints, resume, signals, several processes.

    ldm-lab selftest --out /tmp/run --steps 200
    torchrun --nproc_per_node 2 -m ldm_lab.cli selftest --out /tmp/run2      # 2 CPU processes (gloo)
    accelerate launch --multi_gpu --num_processes 2 -m ldm_lab.cli selftest --out /tmp/run2 --device auto

The task is a small MLP regressing a fixed random linear map on synthetic data, with input noise whose size is
drawn from torch, numpy *and* Python's ``random``, so that a resume which forgot any RNG would diverge. Every
process reports (and the command prints as one JSON line) its rank, the final step, whether it was interrupted, a
SHA-256 of its parameters, and whether all processes hold identical parameters (checked by all-gather).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ldm_lab.checkpoints import parameter_digest
from ldm_lab.training.config import TrainConfig
from ldm_lab.training.trainer import Trainer

IN_FEATURES, HIDDEN, OUT_FEATURES = 8, 32, 4


def tiny_dataset(num_samples: int = 256, seed: int = 1234) -> TensorDataset:
    """Pairs (x [8], y [4]) with y = A x + 0.01 noise, for a fixed random A."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, IN_FEATURES, generator=generator)
    a = torch.randn(IN_FEATURES, OUT_FEATURES, generator=generator)
    return TensorDataset(x, x @ a + 0.01 * torch.randn(num_samples, OUT_FEATURES, generator=generator))


def tiny_model(seed: int = 0) -> nn.Module:
    """An 8 -> 32 -> 4 MLP with deterministic initial weights."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN_FEATURES, HIDDEN), nn.SiLU(), nn.Linear(HIDDEN, OUT_FEATURES))


class NoisyRegression:
    """MSE on inputs perturbed by noise of a randomly jittered scale (0 turns the noise off)."""

    def __init__(self, input_noise: float = 0.1, seconds_per_step: float = 0.0) -> None:
        self.input_noise, self.seconds_per_step = input_noise, seconds_per_step

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        scale = self.input_noise * (1 + 0.1 * random.random()) * (1 + 0.1 * float(np.random.rand()))
        if self.seconds_per_step:
            time.sleep(self.seconds_per_step)  # lets a test send a signal mid-run
        return nn.functional.mse_loss(model(x + scale * torch.randn_like(x)), y)


@dataclass(frozen=True)
class SelftestConfig:
    """One self-test run (the trainer's settings are fixed: lr 1e-2, 10 warm-up steps, EMA 0.9, clipping 1)."""

    run_dir: str | Path                 # the run folder (checkpoints, metrics)
    steps: int = 200
    batch_size: int = 8                 # per process and micro-batch
    grad_accum_steps: int = 1
    checkpoint_every: int = 50          # 0: only the final checkpoint
    seed: int = 0
    input_noise: float = 0.1            # size of the noise added to the inputs (0: none)
    seconds_per_step: float = 0.0       # slow each step down, so that a test can send a signal mid-run
    device: str | None = "cpu"          # "cpu" (bit-exact resume); "auto" or None: the best available; "cuda", "mps"
    mixed_precision: str = "no"         # one of MIXED_PRECISION_CHOICES
    resume: bool = False                # continue the newest checkpoint in run_dir

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, grad_accum_steps=self.grad_accum_steps,
                           lr=1e-2, warmup_steps=10, weight_decay=0.01, ema_decay=0.9, max_grad_norm=1.0,
                           checkpoint_every=self.checkpoint_every, log_every=10, seed=self.seed,
                           mixed_precision=self.mixed_precision, device=self.device)


def run_selftest(config: SelftestConfig) -> dict:
    """Run (or resume) the tiny training; return this process's report (``ldm-lab selftest`` prints it)."""
    torch.set_num_threads(1)
    trainer = Trainer(tiny_model(), NoisyRegression(config.input_noise, config.seconds_per_step), tiny_dataset(),
                      config.train_config(), config.run_dir, resume=config.resume)
    result = trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    every_rank = trainer.accelerator.gather(flat[None])  # [processes, num_params]
    report = {"rank": trainer.accelerator.process_index, "num_processes": trainer.accelerator.num_processes,
              "step": result.step, "interrupted": result.interrupted, "digest": parameter_digest(result.model),
              "ranks_in_sync": bool((every_rank == every_rank[0]).all())}
    trainer.accelerator.end_training()
    return report
