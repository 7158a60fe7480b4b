"""Diffusion training through the trainer, and the notebook helpers (figures, widget) on tiny inputs."""

from __future__ import annotations

import torch
from torch import nn

from ldm_lab import plotting, widgets
from ldm_lab.diffusion import DiffusionLoss, make_schedule
from ldm_lab.diffusion.oracle import sampler_error_table
from ldm_lab.training import TrainConfig, read_metrics, train


class TinyDenoiser(nn.Module):
    """A per-pixel eps-model: enough to learn Gaussian data."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = (t.float() / 1000).reshape(-1, 1, 1, 1).expand_as(x)
        return self.net(torch.stack([x, t], dim=-1)).squeeze(-1)


def test_training_lowers_the_diffusion_loss(tmp_path):
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(0.5 + 0.25 * torch.randn(64, 1, 4, 4))
    loss = DiffusionLoss(make_schedule("linear"), "eps")
    config = TrainConfig(steps=150, batch_size=16, lr=1e-2, log_every=1, checkpoint_every=0, device="cpu")
    train(TinyDenoiser(), lambda model, batch: loss(model, batch[0]), data, config, tmp_path)
    history = [row["loss"] for row in read_metrics(tmp_path)]
    assert len(history) == 150
    assert sum(history[-20:]) / 20 < 0.8 * sum(history[:20]) / 20


def test_figures_are_drawn_and_saved(tmp_path):
    schedule = make_schedule("linear")
    images = torch.rand(2, 1, 8, 8) * 2 - 1
    plotting.forward_process(images, schedule, [0, 500, 999], save=tmp_path / "forward.png")
    plotting.snr_curves({"linear": schedule}, save=tmp_path / "snr.png")
    plotting.parameterisations(images[0], schedule, [10, 900], save=tmp_path / "targets.png")
    plotting.loss_curve([1.0, 0.5] * 20, save=tmp_path / "loss.png")
    table = sampler_error_table(["ddim", "heun"], [2, 4], schedule=schedule, shape=(1, 1, 8, 8))
    assert list(table.columns) == ["sampler", "steps", "model_calls", "mean_error", "std_error", "w2"]
    assert table["model_calls"].tolist() == [2, 4, 3, 7]   # Heun: two calls per step, one on the last
    plotting.error_vs_steps(table, save=tmp_path / "oracle.png")
    assert {p.name for p in tmp_path.iterdir()} == {"forward.png", "snr.png", "targets.png", "loss.png", "oracle.png"}


def test_noise_scrubber_renders_its_default_and_follows_the_slider():
    schedule = make_schedule("linear")
    box = widgets.noise_level_scrubber(torch.zeros(2, 1, 8, 8), schedule, timestep=100)
    slider, output = box.children
    assert slider.value == 100 and slider.max == 999 and len(output.outputs) == 1
    slider.value = 900
    assert len(output.outputs) == 1
    assert "t=900" in widgets.sigma_readout(schedule, 900)
