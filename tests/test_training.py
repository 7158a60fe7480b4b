"""The trainer: schedule, EMA, accumulation, clipping, checkpoints, exact resume after kills, 2 processes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_model
from torch import nn
from torch.utils.data import TensorDataset

import ldm_lab.training.checkpoint as checkpoint_module
from ldm_lab.cli import main as cli_main
from ldm_lab.training import (
    EMA, CheckpointMismatchError, SeededBatchSampler, TrainConfig, Trainer, latest_checkpoint, list_checkpoints,
    load_weights, read_metrics, train, warmup_cosine_lr)
from ldm_lab.training.checkpoint import checkpoint_path
from ldm_lab.checkpoints import parameter_digest
from ldm_lab.training.selftest import SelftestConfig, run_selftest, tiny_model

SELFTEST = [sys.executable, "-m", "ldm_lab.cli", "selftest"]
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def linear_problem(num_samples: int = 64) -> tuple[nn.Module, TensorDataset]:
    torch.manual_seed(0)
    x = torch.randn(num_samples, 3)
    return nn.Linear(3, 2), TensorDataset(x, x @ torch.randn(3, 2))


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def cpu_config(**overrides) -> TrainConfig:
    values = {"steps": 6, "batch_size": 8, "lr": 1e-2, "max_grad_norm": None, "checkpoint_every": 0,
              "log_every": 1, "device": "cpu"}
    return TrainConfig(**{**values, **overrides})


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, f"the run ended (rc {process.returncode}) before {path.name} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout_s} s"
        time.sleep(0.02)


def report_of(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


# -- pure pieces -------------------------------------------------------------------------------------------


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    lr = [warmup_cosine_lr(s, peak_lr=2.0, warmup_steps=4, total_steps=104, min_lr_ratio=0.25)
          for s in range(105)]
    assert lr[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert lr[4] == pytest.approx(2.0)                      # decay starts at the peak
    assert lr[54] == pytest.approx(0.5 + 1.5 * 0.5)         # half-way: mean of peak and floor
    assert lr[29] == pytest.approx(0.5 + 1.5 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr[104] == pytest.approx(0.5)                    # the floor, lr * min_lr_ratio
    assert all(a >= b for a, b in zip(lr[4:], lr[5:]))


def test_ema_is_the_exponential_moving_average_with_litema_warm_up():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.9)
    assert [ema.decay_at(n) for n in (0, 1, 79, 10_000)] == [2 / 11, 3 / 12, 81 / 90, 0.9]  # LitEma's n + 1
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, num_updates=100)
    ema.update(model, num_updates=101)
    # two steps (past the warm-up) towards a constant target: ema = 0.9^2 * start + (1 - 0.9^2) * 1
    torch.testing.assert_close(ema.model.weight, 0.81 * start + 0.19, rtol=0, atol=1e-6)
    ema.update(model, num_updates=0)  # at the start the average follows the weights closely: d = 2/11 (LitEma)
    torch.testing.assert_close(ema.model.weight, 2 / 11 * (0.81 * start + 0.19) + 9 / 11, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_seeded_batches_cover_each_epoch_once_and_split_the_global_batch_across_ranks():
    stream = iter(SeededBatchSampler(10, batch_size=4, seed=3))
    first_epoch = [i for _ in range(5) for i in next(stream)][:20]
    assert sorted(first_epoch[:10]) == list(range(10)) and sorted(first_epoch[10:]) == list(range(10))
    assert first_epoch[:10] != first_epoch[10:]                 # a new order each epoch
    ranks = [iter(SeededBatchSampler(10, batch_size=2, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert next(ranks[0]) + next(ranks[1]) == first_epoch[:4]   # rank r takes the r-th slice
    resumed = iter(SeededBatchSampler(10, batch_size=4, seed=3, start=8))
    assert next(resumed) == first_epoch[8:12]                    # resuming needs only the position


def test_config_errors_say_what_to_change():
    with pytest.raises(ValueError, match="ema_decay must be in"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="unknown mixed precision"):
        TrainConfig(mixed_precision="fp8")
    assert TrainConfig.from_dict(json.loads(json.dumps(TrainConfig(betas=(0.5, 0.6)).to_dict()))) == \
        TrainConfig(betas=(0.5, 0.6))


# -- the loop ----------------------------------------------------------------------------------------------


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    finals = []
    for name, batch_size, accum in (("big", 8, 1), ("accumulated", 4, 2)):
        model, data = linear_problem()
        train(model, mse, data, cpu_config(batch_size=batch_size, grad_accum_steps=accum), tmp_path / name)
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(finals[0], finals[1], rtol=0, atol=1e-6)


def test_time_limit_stops_checkpointed_and_resumable(tmp_path):
    def slow_mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        time.sleep(0.05)
        return mse(model, batch)

    model, data = linear_problem()
    result = train(model, slow_mse, data, cpu_config(steps=1000, time_limit_s=0.3), tmp_path)
    assert result.interrupted and 1 <= result.step < 100
    assert latest_checkpoint(tmp_path) is not None
    resumed = train(model, mse, data, cpu_config(steps=result.step + 2), tmp_path, resume=True)
    assert resumed.step == result.step + 2 and not resumed.interrupted


def test_clipping_scales_the_gradient_to_max_norm_and_logs_the_norm_before(tmp_path):
    model, data = linear_problem()
    x, y = data[SeededBatchSampler(len(data), 8, seed=0).indices(0, 8)]
    reference = nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())
    mse(reference, (x, y)).backward()
    norm_before = torch.cat([p.grad.flatten() for p in reference.parameters()]).norm().item()
    assert norm_before > 0.5

    trainer = Trainer(model, mse, data, cpu_config(steps=1, max_grad_norm=0.5), tmp_path)
    applied = []
    inner = trainer.optimizer.optimizer
    original_step = inner.step
    inner.step = lambda *a, **k: (applied.append(torch.cat([p.grad.flatten() for p in model.parameters()])
                                                 .norm().item()), original_step(*a, **k))[1]
    trainer.fit()
    assert applied == [pytest.approx(0.5, rel=1e-5)]
    logged = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert logged["grad_norm"] == pytest.approx(norm_before, rel=1e-5)
    assert set(logged) == {"step", "loss", "lr", "grad_norm", "samples_per_s", "elapsed_s"}


class _SamplingTask:
    def loss(self, model, batch):
        return mse(model, batch)

    def sample(self, model):
        return torch.rand(6, 1, 5, 7) * 2 - 1


def test_run_directory_holds_config_log_samples_and_checkpoints(tmp_path):
    from PIL import Image

    model, data = linear_problem()
    result = train(model, _SamplingTask(), data,
                   cpu_config(steps=4, log_every=2, sample_every=2, checkpoint_every=2, ema_decay=0.5), tmp_path)
    assert (result.step, result.interrupted) == (4, False)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 4
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert Image.open(tmp_path / "samples" / "step_000004.png").size == (3 * 7 + 4 * 2, 2 * 5 + 3 * 2)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 4]
    ema_copy = load_weights(nn.Linear(3, 2), tmp_path, ema=True)
    torch.testing.assert_close(ema_copy.weight, result.ema_model.weight)


def test_an_interrupted_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    model, data = linear_problem()
    real_save_file = checkpoint_module.save_file
    calls = []

    def save_file_that_dies_the_second_time(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real_save_file(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_file", save_file_that_dies_the_second_time)
    with pytest.raises(OSError, match="simulated"):
        train(model, mse, data, cpu_config(steps=4, checkpoint_every=2), tmp_path)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    monkeypatch.setattr(checkpoint_module, "save_file", real_save_file)

    load_weights(nn.Linear(3, 2), tmp_path)
    resumed = train(nn.Linear(3, 2), mse, data, cpu_config(steps=4, checkpoint_every=2), tmp_path, resume=True)
    assert resumed.step == 4 and latest_checkpoint(tmp_path).name == "step_000004"


def test_resuming_into_a_different_model_names_the_first_offending_key(tmp_path):
    model, data = linear_problem()
    train(model, mse, data, cpu_config(steps=2, checkpoint_every=2), tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"'weight' has shape \(2, 3\) in the checkpoint but "
                                                      r"\(5, 3\).*new run directory"):
        Trainer(nn.Linear(3, 5), mse, data, cpu_config(steps=4), tmp_path, resume=True)
    with pytest.raises(FileExistsError, match="resume=True"):
        Trainer(nn.Linear(3, 2), mse, data, cpu_config(steps=4), tmp_path)


def test_mixed_precision(tmp_path):
    model, data = linear_problem()
    with pytest.raises(ValueError, match="fp16.*needs a CUDA or MPS device.*bf16"):
        Trainer(model, mse, data, cpu_config(mixed_precision="fp16"), tmp_path / "fp16")
    result = train(model, mse, data, cpu_config(steps=2, mixed_precision="bf16"), tmp_path / "bf16")
    assert result.step == 2 and all(torch.isfinite(p).all() for p in model.parameters())


# -- kills, signals and several processes (subprocesses) ---------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted_digest(tmp_path_factory) -> str:
    """Final weights of an uninterrupted 200-step selftest run (in this process)."""
    return run_selftest(SelftestConfig(tmp_path_factory.mktemp("uninterrupted"), steps=200))["digest"]


def test_sigkill_then_resume_gives_bit_identical_weights(tmp_path, uninterrupted_digest):
    args = ["--out", str(tmp_path), "--steps", "200"]
    run = subprocess.Popen([*SELFTEST, *args, "--seconds-per-step", "0.02"], env=CHILD_ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wait_for(checkpoint_path(tmp_path, 50), run)
    run.kill()
    assert run.wait() == -signal.SIGKILL
    assert latest_checkpoint(tmp_path).name != "step_000200"
    with open(tmp_path / "metrics.jsonl", "a") as log:
        log.write('{"step": 9')  # as if the kill had landed mid-write
    resumed = subprocess.run([*SELFTEST, *args, "--resume"], env=CHILD_ENV, capture_output=True, text=True,
                             check=True)
    report = report_of(resumed.stdout)
    assert (report["step"], report["digest"]) == (200, uninterrupted_digest)
    # the killed session's lines after its last checkpoint were dropped, so no step is logged twice
    assert [record["step"] for record in read_metrics(tmp_path)] == list(range(10, 201, 10))


def test_sigterm_checkpoints_the_current_step_and_exits_cleanly(tmp_path, uninterrupted_digest):
    args = ["--out", str(tmp_path), "--steps", "200"]
    run = subprocess.Popen([*SELFTEST, *args, "--seconds-per-step", "0.02"], env=CHILD_ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_for(checkpoint_path(tmp_path, 50), run)
    run.send_signal(signal.SIGTERM)
    stdout, _ = run.communicate(timeout=60)
    assert run.returncode == 0
    report = report_of(stdout)
    assert report["interrupted"] and 50 <= report["step"] < 200
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, report["step"])
    resumed = subprocess.run([*SELFTEST, *args, "--resume"], env=CHILD_ENV, capture_output=True, text=True,
                             check=True)
    assert report_of(resumed.stdout)["digest"] == uninterrupted_digest


def test_two_cpu_processes_stay_in_sync_and_match_one_process_with_the_global_batch(tmp_path):
    args = ["--steps", "30", "--checkpoint-every", "0", "--input-noise", "0"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ldm_lab.cli", "selftest"]
    done = subprocess.run([*launch, "--out", str(tmp_path / "two"), *args, "--batch-size", "4"],
                          env=CHILD_ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = sorted((json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")),
                     key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == [0, 1] and all(r["num_processes"] == 2 for r in reports)
    assert all(r["ranks_in_sync"] for r in reports) and reports[0]["digest"] == reports[1]["digest"]
    saved = tiny_model()
    load_model(saved, str(checkpoint_path(tmp_path / "two", 30) / "model.safetensors"))
    assert parameter_digest(saved) == reports[0]["digest"]

    single = tiny_model()
    assert cli_main(["selftest", "--out", str(tmp_path / "one"), *args, "--batch-size", "8"]) == 0
    load_weights(single, tmp_path / "one")
    for a, b in zip(saved.parameters(), single.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
