"""A tiny training run that exercises the whole trainer: checkpoints, resume, signals, several processes.

    python -m ldm_lab.training.selftest --run-dir /tmp/run --steps 200
    torchrun --nproc_per_node 2 -m ldm_lab.training.selftest --run-dir /tmp/run2      # 2 CPU processes (gloo)
    accelerate launch --multi_gpu --num_processes 2 -m ldm_lab.training.selftest --run-dir /tmp/run2 --device auto

The task is a small MLP regressing a fixed random linear map on synthetic data, with input noise whose size is
drawn from torch, numpy *and* Python's ``random``, so that a resume which forgot any RNG would diverge. Every
process prints one JSON line: its rank, the final step, whether it was interrupted, a SHA-256 of its
parameters, and whether all processes hold identical parameters (checked by all-gather).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ldm_lab.training.config import MIXED_PRECISION_CHOICES, TrainConfig
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


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 of all parameters' bytes, in order: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for param in model.parameters():
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(steps=args.steps, batch_size=args.batch_size, grad_accum_steps=args.grad_accum_steps,
                       lr=1e-2, warmup_steps=10, weight_decay=0.01, ema_decay=0.9, max_grad_norm=1.0,
                       checkpoint_every=args.checkpoint_every, log_every=10, seed=args.seed,
                       mixed_precision=args.mixed_precision, device=args.device)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8, help="per process and micro-batch")
    parser.add_argument("--grad-accum-steps", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-noise", type=float, default=0.1)
    parser.add_argument("--seconds-per-step", type=float, default=0.0, help="slow each step down (signal tests)")
    parser.add_argument("--device", default="cpu", help="'cpu' (bit-exact resume), 'auto', 'cuda' or 'mps'")
    parser.add_argument("--mixed-precision", default="no", choices=MIXED_PRECISION_CHOICES)
    parser.add_argument("--resume", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run (or resume) the tiny training; print and return this process's JSON report."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    trainer = Trainer(tiny_model(), NoisyRegression(args.input_noise, args.seconds_per_step), tiny_dataset(),
                      config_from_args(args), args.run_dir, resume=args.resume)
    result = trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in result.model.parameters()])
    every_rank = trainer.accelerator.gather(flat[None])  # [processes, num_params]
    report = {"rank": trainer.accelerator.process_index, "num_processes": trainer.accelerator.num_processes,
              "step": result.step, "interrupted": result.interrupted, "digest": parameter_digest(result.model),
              "ranks_in_sync": bool((every_rank == every_rank[0]).all())}
    sys.stdout.write(json.dumps(report) + "\n")  # one write, so the lines of several processes do not interleave
    sys.stdout.flush()
    trainer.accelerator.end_training()
    return report


if __name__ == "__main__":
    main()
