"""What a task gives the trainer: a loss, and optionally a way to draw sample images."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class TrainingTask(Protocol):
    """A training objective. ``loss`` gets the *unwrapped* model (call any of its methods) and a batch already
    on the training device, and returns a scalar, averaged over the batch."""

    def loss(self, model: nn.Module, batch: Any) -> Tensor: ...


@runtime_checkable
class SamplingTask(TrainingTask, Protocol):
    """A task that can also draw images, for the periodic sample grids (``TrainConfig.sample_every``)."""

    def sample(self, model: nn.Module) -> Tensor:
        """Images ``[N, C, H, W]`` in ``[-1, 1]``; called in eval mode without gradients, with the EMA weights
        when EMA is on, and with the torch RNG seeded from ``TrainConfig.seed`` (the same noise every time)."""
        ...


class LossFunctionTask:
    """Adapts a plain ``loss_fn(model, batch) -> Tensor`` to :class:`TrainingTask`."""

    def __init__(self, loss_fn: Callable[[nn.Module, Any], Tensor]) -> None:
        self.loss_fn = loss_fn

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        return self.loss_fn(model, batch)


def as_task(task: TrainingTask | Callable[[nn.Module, Any], Tensor]) -> TrainingTask:
    """A task object, or a loss function wrapped as one."""
    if isinstance(task, TrainingTask):
        return task
    if callable(task):
        return LossFunctionTask(task)
    raise TypeError(f"expected a TrainingTask (an object with .loss(model, batch)) or a function "
                    f"loss_fn(model, batch) -> Tensor, got {type(task).__name__}.")


class LossModule(nn.Module):
    """The model with the task's loss as its ``forward``. The trainer hands *this* to ``accelerator.prepare``,
    so whatever the loss calls on the model (``encode``, ``decode``, submodules...) runs inside the wrapped
    forward, and DDP synchronises every gradient the loss produced."""

    def __init__(self, model: nn.Module, task: TrainingTask) -> None:
        super().__init__()
        self.model = model
        self.__dict__["task"] = task  # not a submodule: a task's own parameters are not trained here

    def forward(self, batch: Any) -> Tensor:
        loss = self.task.loss(self.model, batch)
        if loss.dim() != 0:
            raise ValueError(f"the task's loss must be a scalar (average over the batch), got shape "
                             f"{tuple(loss.shape)}; reduce it with .mean().")
        return loss
