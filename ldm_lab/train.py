"""A minimal training loop: AdamW on ``loss_fn(model, batch)`` for a fixed number of steps.

    history = fit(unet, loss_fn, batches, steps=2000, lr=2e-4)

The full trainer (EMA, checkpoints, resume, multi-GPU) is ``ldm_lab.training``; this loop is the part of it a
notebook needs to show the idea.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

LossFn = Callable[[nn.Module, Any], Tensor]   # (model, batch) -> scalar loss


def repeat_forever(batches: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``batches`` again and again (a new pass each time, so a shuffling loader reshuffles)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("the batches iterable yielded nothing; give fit() at least one batch")


def move_to(batch: Any, device: torch.device) -> Any:
    """A tensor, or a tuple / list / dict of tensors, on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {key: move_to(value, device) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_to(value, device) for value in batch)
    return batch


def fit(model: nn.Module, loss_fn: LossFn, batches: Iterable[Any], steps: int, lr: float, *,
        weight_decay: float = 0.0, grad_clip: float | None = 1.0, max_seconds: float | None = None,
        progress: bool = True) -> list[float]:
    """Train ``model`` in place with AdamW (Loshchilov & Hutter 2019) for ``steps`` steps, or until ``max_seconds``
    have passed; return the loss of every step taken. Batches are moved to the model's device; gradients are
    clipped to norm ``grad_clip`` (None: no clipping)."""
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    history: list[float] = []
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    bar = tqdm(range(steps), disable=not progress, desc="training")
    for _, batch in zip(bar, repeat_forever(batches)):
        loss = loss_fn(model, move_to(batch, device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        history.append(loss.item())
        bar.set_postfix(loss=f"{history[-1]:.4f}", refresh=False)
        if deadline is not None and time.monotonic() > deadline:
            break
    model.eval()
    return history
