"""The trainer's progress bar: a time-limited run shows time against its limit, never a step ETA."""

from __future__ import annotations

import io
import re
import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ldm_lab.training import TrainConfig, train
from ldm_lab.training.progress import StepProgress, TimeLimitProgress, training_progress


def test_a_time_limited_bar_shows_time_of_the_limit_and_the_step_without_a_step_eta():
    bar = training_progress(5000, 0, time_limit_s=600.0, file=io.StringIO())
    assert isinstance(bar, TimeLimitProgress)
    bar.advance(621, session_s=150.0)
    line = str(bar)
    bar.close()
    assert "25%" in line                                  # 150 of 600 seconds spent
    assert "of the 10:00 time limit" in line and "step 621 (stops at 5000 if time is left)" in line
    assert "621/5000" not in line and "<" not in line     # no step counter with its remaining-time estimate


def test_a_time_limited_bar_stays_full_once_the_limit_is_spent():
    bar = training_progress(5000, 0, time_limit_s=60.0, file=io.StringIO())
    bar.advance(10, session_s=75.0)
    assert bar.n == 60.0 and "100%" in str(bar)
    bar.close()


def test_a_step_bounded_bar_counts_steps_from_a_resumed_step():
    bar = training_progress(5000, 100, time_limit_s=None, file=io.StringIO())
    assert isinstance(bar, StepProgress)
    bar.advance(621, session_s=10.0)
    assert bar.n == 621 and "621/5000" in str(bar)
    bar.close()


def test_the_trainer_draws_the_time_bar_for_a_time_limited_run(tmp_path, capsys):
    def slow_mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        time.sleep(0.02)
        x, y = batch
        return nn.functional.mse_loss(model(x), y)

    x = torch.randn(32, 3)
    config = TrainConfig(steps=5000, batch_size=8, lr=1e-2, checkpoint_every=0, device="cpu", time_limit_s=0.3)
    result = train(nn.Linear(3, 2), slow_mse, TensorDataset(x, x[:, :2]), config, tmp_path)
    drawn = capsys.readouterr().err
    assert result.interrupted and result.step < 5000
    assert "time limit" in drawn and re.search(rf"step {result.step} \(stops at 5000", drawn)
    assert "/5000" not in drawn
