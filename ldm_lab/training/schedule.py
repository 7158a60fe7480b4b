"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (Loshchilov & Hutter 2017, SGDR)."""

from __future__ import annotations

import math

from ldm_lab.training.config import TrainConfig


def warmup_cosine_lr(step: int, *, peak_lr: float, warmup_steps: int, total_steps: int,
                     min_lr_ratio: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based).

    Warm-up: ``peak * (step + 1) / warmup_steps`` (so the first step is not wasted at lr 0).
    Then cosine: ``floor + (peak - floor) * (1 + cos(pi * progress)) / 2``, progress 0 -> 1 over the remaining
    steps, with ``floor = peak * min_lr_ratio``.
    """
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    floor = peak_lr * min_lr_ratio
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return floor + (peak_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, config: TrainConfig) -> float:
    """:func:`warmup_cosine_lr` with the schedule fields of a :class:`TrainConfig`."""
    return warmup_cosine_lr(step, peak_lr=config.lr, warmup_steps=config.warmup_steps,
                            total_steps=config.steps, min_lr_ratio=config.min_lr_ratio)
