"""Retraining a shipped evaluation model (``fmnist-classifier``, ``lab-clip``): a run trained to its last step in
``build/runs/<name>``, and the command line its manifest entry records. The weights go to the checkpoint store,
:mod:`ldm_lab.checkpoints`."""

from __future__ import annotations

import dataclasses
import time

import torch

from ldm_lab.paths import runs_dir
from ldm_lab.training import TrainConfig, TrainResult, train


def training_command(name: str, options) -> str:
    """The command line that reproduces a training run, for the manifest: ``ldm-lab train-evaluator NAME`` with
    the ``options`` (a frozen dataclass of them) that differ from their defaults."""
    defaults = type(options)()
    changed = [f"--{field.name.replace('_', '-')} {value}" for field in dataclasses.fields(options)
               if (value := getattr(options, field.name)) != getattr(defaults, field.name)]
    return " ".join(["ldm-lab train-evaluator", name, *changed])


def train_to_completion(model: torch.nn.Module, task, data, config: TrainConfig,
                        name: str) -> tuple[TrainResult, float]:
    """Train in ``build/runs/<name>`` (resuming an interrupted run there); return the result and the wall
    seconds. A run stopped early raises ``SystemExit``: only a run that reached its last step is shipped."""
    start = time.perf_counter()
    result = train(model, task, data, config, run_dir=runs_dir() / name, resume=True)
    if result.interrupted:
        raise SystemExit(f"stopped at step {result.step} of {config.steps}; nothing shipped. Run the same command "
                         "again to resume from the checkpoint.")
    return result, time.perf_counter() - start
