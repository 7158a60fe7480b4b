"""Where an ADD step's time goes: the phases of :class:`~ldm_lab.distill.add.ADDModels` timed over a few steps.

    table = step_time_breakdown("lab-emoji", batch_size=8, steps=3)   # seconds per step, by phase

Use it to size a run: a run's steps = its time budget / the "step (total)" row.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset

from ldm_lab.data.materialise import training_dataset
from ldm_lab.device import resolve_device
from ldm_lab.distill.add import PhaseTimer
from ldm_lab.distill.config import DistillConfig
from ldm_lab.distill.discriminator import FeatureNetwork
from ldm_lab.distill.loop import Distiller
from ldm_lab.distill.run import build_models, load_teacher
from ldm_lab.models import LatentDiffusion
from ldm_lab.shipping.load import load_trained
from ldm_lab.tasks.runs import RunLoader


def step_time_breakdown(teacher: str | Path | LatentDiffusion = "lab-emoji", batch_size: int = 8, steps: int = 3,
                        config: DistillConfig = DistillConfig(), *, features: FeatureNetwork | None = None,
                        data: Dataset | None = None, warmup_steps: int = 1,
                        loader: RunLoader = load_trained) -> pd.DataFrame:
    """Seconds per training step by phase (:func:`breakdown_table`), averaged over ``steps`` steps after
    ``warmup_steps`` untimed ones, at ``batch_size``; nothing is written."""
    config = replace(config, train=replace(config.train, batch_size=batch_size))
    model = load_teacher(teacher, resolve_device(config.train.device), loader)
    timer = PhaseTimer()
    models = build_models(model, config, features, timer)
    data = data if data is not None else training_dataset(config.dataset, model.preset.resolution)
    with tempfile.TemporaryDirectory() as scratch:
        distiller = Distiller(models, data, config, scratch)
        batches = distiller.batches()
        distiller.step = 1  # as in a run after its first update: step 0 logs, with two more backward passes (the
                            # terms' gradient norms), which a run does once every log_every updates
        for _ in range(warmup_steps):
            distiller.train_step(next(batches))
        timer.clear()
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(steps):
            distiller.train_step(next(batches))
        total, cpu_total = (time.perf_counter() - start) / steps, (time.process_time() - cpu_start) / steps
    return breakdown_table(timer, steps, total, cpu_total)


def breakdown_table(timer: PhaseTimer, steps: int, total: float, cpu_total: float) -> pd.DataFrame:
    """Per phase: wall ``seconds`` and ``cpu_seconds`` per step, and the phase's ``share`` of the step's CPU
    time; then what no phase covers (optimizer steps, EMA, clipping) and the whole step."""
    table = pd.DataFrame({"seconds": pd.Series(timer.seconds) / steps,
                          "cpu_seconds": pd.Series(timer.cpu_seconds) / steps})
    table.loc["other (optimizer steps, EMA, clipping)"] = [total - table["seconds"].sum(),
                                                          cpu_total - table["cpu_seconds"].sum()]
    table.loc["step (total)"] = [total, cpu_total]
    table["share"] = table["cpu_seconds"] / cpu_total
    table.attrs.update(steps=steps, threads=torch.get_num_threads())
    return table
