"""Bad input is refused with a message that says what to change: counts of 0 or below, non-finite numbers,
too few samples to score, images that went NaN, and datasets without a default feature space."""

import math
import os
import signal
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import ldm_lab.tasks
import ldm_lab.tasks.evaluate as evaluate
from ldm_lab import cli
from ldm_lab.data import DATASETS
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.metrics import FEATURE_SPACES
from ldm_lab.metrics.fidelity import (MIN_SAMPLES, fid_from_features, fidelity_metrics, kid_from_features,
                                      precision_recall_from_features)
from ldm_lab.tasks import get_target, run_config
from ldm_lab.training import TrainConfig, TrainResult, train


# ------------------------------------------------------------------------------------- counts and numbers
@pytest.mark.parametrize("argv", [
    ["sample", "run", "--steps", "0"],
    ["sample", "run", "--num", "0"],
    ["sample", "run", "--guidance-scale", "nan"],
    ["sample", "run", "--guidance-scale", "inf"],
    ["eval", "run", "--num-samples", "-5"],
    ["eval", "run", "--steps", "-1"],
    ["train", "lab-class", "--steps", "0"],
    ["train", "lab-class", "--batch-size", "0"],
    ["train", "lab-class", "--time-limit", "nan"],
    ["train", "lab-class", "--time-limit", "0"],
    ["bench", "--batch-size", "0"],
    ["bench", "--repeats", "0"],
    ["ship", "--all", "--jobs", "0"],
    ["ship", "--all", "--budget-s", "inf"],
])
def test_zero_negative_and_non_finite_options_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "must be" in capsys.readouterr().err


@pytest.mark.parametrize("option", [{"steps": 0}, {"batch_size": 0}, {"steps": -3}, {"time_limit_s": math.nan}])
def test_run_config_refuses_counts_that_used_to_mean_the_default(option):
    with pytest.raises(ValueError, match="must be > 0"):
        run_config(get_target("lab-class"), **option)


def test_bench_refuses_a_zero_batch():
    from ldm_lab.bench import bench_target

    with pytest.raises(ValueError, match="batch_size must be >= 1, not 0"):
        bench_target("lab-pixel", batch_size=0, device="cpu")


# -------------------------------------------------------------------------------------- images that went NaN
def _fake_run(**target_fields):
    task = SimpleNamespace(sampling=SamplingSettings(sampler="ddim", steps=2))
    target = SimpleNamespace(name="lab-class", task=task, dataset="fashion_mnist", resolution=(28, 28),
                             sample_conditions=lambda num: [None] * num, **target_fields)
    return SimpleNamespace(model=nn.Linear(1, 1), target=target, step=0, ema=True, run_dir=Path("run"))


def test_sample_refuses_to_save_images_that_went_nan(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_load_diffusion_run", lambda args: _fake_run())
    monkeypatch.setattr(ldm_lab.tasks, "generate", lambda model, num, **kw: torch.full((num, 1, 8, 8), math.nan))
    out = tmp_path / "grid.png"
    assert cli.main(["sample", "run", "--num", "4", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "4 of 4 generated images hold NaN or infinite values" in error and "--guidance-scale" in error
    assert not out.exists()


def test_eval_refuses_to_score_images_that_went_nan(monkeypatch):
    def batches(run, num_samples, batch_size):
        yield {"image": torch.zeros(num_samples, 1, 28, 28), "label": torch.zeros(num_samples, dtype=torch.long)}

    monkeypatch.setattr(evaluate, "validation_batches", batches)
    monkeypatch.setattr(evaluate, "generate_like", lambda model, batch, **kw: torch.full_like(batch["image"], math.inf))
    with pytest.raises(ValueError, match="60 of 60 generated images hold NaN or infinite values; the sampler"):
        evaluate.evaluate_diffusion(_fake_run(), 60, "fmnist-classifier", SamplingSettings())


# ------------------------------------------------------------------------------------------ too few samples
@pytest.mark.parametrize("n", [0, 1, 2, 4])
def test_fidelity_metrics_refuses_too_few_samples_and_says_why(n):
    images = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match=f"at least {MIN_SAMPLES} per set .* hard floor 5"):
        fidelity_metrics(images, images, "fmnist-classifier")


def test_the_minimum_can_be_lowered_but_not_below_the_hard_floor():
    images = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match="need at least 5 per set"):
        fidelity_metrics(images, images, "fmnist-classifier", min_samples=2)


def test_the_feature_functions_refuse_sets_their_formulas_are_undefined_for():
    one, four = torch.randn(1, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match="too few"):
        fid_from_features(one, one)
    with pytest.raises(ValueError, match="too few"):
        kid_from_features(one, one)
    with pytest.raises(ValueError, match="3-NN radius"):
        precision_recall_from_features(four, torch.randn(4, 8))  # used to give precision = recall = 1
    assert math.isfinite(fid_from_features(torch.randn(50, 8), torch.randn(50, 8)))


def test_eval_checks_the_sample_count_before_sampling(monkeypatch):
    monkeypatch.setattr(evaluate, "validation_batches", lambda *a: pytest.fail("sampled before checking n"))
    with pytest.raises(ValueError, match="too few"):
        evaluate.evaluate_diffusion(_fake_run(), 10, "fmnist-classifier", SamplingSettings())


# -------------------------------------------------------------------------------------- default feature spaces
def test_every_dataset_names_a_known_feature_space():
    for name, source in DATASETS.items():
        assert source.feature_space in FEATURE_SPACES, name


def test_lab_sdxl_runs_are_scored_in_their_datasets_feature_space():
    target = get_target("lab-sdxl")
    assert target.dataset == "shapes_multiscale"
    assert evaluate.default_feature_space(SimpleNamespace(target=target)) == "lab-clip"


# ------------------------------------------------------------------------------------ why a training run stopped
class _SignalAtStep:
    """A loss that sends this process ``signum`` at its second call."""

    def __init__(self, signum: int) -> None:
        self.signum, self.calls = signum, 0

    def __call__(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 2:
            os.kill(os.getpid(), self.signum)
        return model(batch).pow(2).mean()


def test_the_trainer_reports_a_signal_and_the_time_limit_apart(tmp_path):
    data, config = torch.randn(16, 3), TrainConfig(steps=50, batch_size=2, device="cpu", log_every=1)
    stopped = train(nn.Linear(3, 3), _SignalAtStep(signal.SIGTERM), data, config, tmp_path / "signal")
    assert stopped.interrupted and stopped.stopped_by == "SIGTERM" and stopped.step == 2
    timed = train(nn.Linear(3, 3), _SignalAtStep(0), data, replace(config, time_limit_s=1e-9), tmp_path / "time")
    assert timed.interrupted and timed.stopped_by == "time_limit"
    done = train(nn.Linear(3, 3), _SignalAtStep(0), data, TrainConfig(steps=2, batch_size=2, device="cpu"),
                 tmp_path / "done")
    assert not done.interrupted and done.stopped_by is None


@pytest.mark.parametrize("stopped_by, code, message", [
    ("SIGTERM", 143, "stopped by SIGTERM, checkpointed"), ("SIGINT", 130, "stopped by SIGINT"),
    ("time_limit", 0, "stopped at time limit"), (None, 0, "lab-class: step 3/3")])
def test_train_exits_128_plus_the_signal_when_a_signal_stopped_it(stopped_by, code, message, tmp_path, monkeypatch,
                                                                   capsys):
    def fake_train(name, out, config, **kwargs):
        return TrainResult(None, None, 1 if stopped_by else 3, Path(out), stopped_by is not None, stopped_by)

    monkeypatch.setattr(ldm_lab.tasks, "train_target", fake_train)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5, "samples_per_s": 10, "elapsed_s": 2}\n')
    argv = ["train", "lab-class", "--steps", "3", "--out", str(tmp_path), "--time-limit", "5"]
    assert cli.main(argv) == code
    output = capsys.readouterr()
    assert message in output.out + output.err
