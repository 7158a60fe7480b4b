"""Faults on disk give one-line errors naming the file and the fix: wrong Inception weights, truncated
checkpoints (resume falls back to the older kept one), unreadable JSON, unwritable folders, truncated images."""

import errno
import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn

import ldm_lab.tasks
from ldm_lab import cli
from ldm_lab.checkpoints import MANIFEST_FILE, read_manifest
from ldm_lab.convert import read_state_dict
from ldm_lab.data import emoji
from ldm_lab.data.download import DatasetMissingError
from ldm_lab.metrics import features
from ldm_lab.metrics.features import FeatureSpaceUnavailable, inception_weights
from ldm_lab.training import TrainConfig, checkpoint, latest_checkpoint, list_checkpoints, load_weights, train
from ldm_lab.training.checkpoint import (MODEL_FILE, STATE_JSON_FILE, CheckpointDamagedError, CheckpointWriteError,
                                         checkpoint_path, checkpoint_problem)

FAKE_WEIGHTS = b"not the inception weights"


@pytest.fixture
def fake_inception(tmp_path, monkeypatch):
    path = tmp_path / features.INCEPTION_FILE
    path.write_bytes(FAKE_WEIGHTS)
    monkeypatch.setenv(features.INCEPTION_ENV, str(path))
    return path


def test_inception_weights_must_match_the_full_sha256_not_its_prefix(fake_inception, monkeypatch):
    actual = hashlib.sha256(FAKE_WEIGHTS).hexdigest()
    same_prefix = actual[:8] + "0" * 56  # what an 8-digit prefix check would have accepted
    monkeypatch.setattr(features, "INCEPTION_SHA256", same_prefix)
    with pytest.raises(FeatureSpaceUnavailable, match=f"its SHA-256 is {actual}, the release asset's is {same_prefix}"):
        inception_weights()
    monkeypatch.setattr(features, "INCEPTION_SHA256", actual)
    assert inception_weights() == fake_inception


def test_the_pinned_inception_hash_is_a_whole_sha256_of_the_named_file():
    assert len(features.INCEPTION_SHA256) == 64 and int(features.INCEPTION_SHA256, 16) >= 0
    assert features.INCEPTION_FILE.removesuffix(".pth").endswith(features.INCEPTION_SHA256[:8])


# ------------------------------------------------------------------------------------------------- checkpoints
def _mse(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch).pow(2).mean()


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


@pytest.fixture
def two_checkpoints(tmp_path):
    config = TrainConfig(steps=4, batch_size=2, device="cpu", checkpoint_every=2, keep_checkpoints=2)
    train(nn.Linear(3, 3), _mse, torch.randn(8, 3), config, tmp_path)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 4]
    return tmp_path


def test_resume_falls_back_to_the_previous_checkpoint_when_the_newest_is_truncated(two_checkpoints):
    _truncate(checkpoint_path(two_checkpoints, 4) / MODEL_FILE)
    with pytest.warns(UserWarning, match="step_000004: model.safetensors is truncated .* using the older step_000002"):
        assert latest_checkpoint(two_checkpoints) == checkpoint_path(two_checkpoints, 2)
    config = TrainConfig(steps=6, batch_size=2, device="cpu", checkpoint_every=2, keep_checkpoints=2)
    with pytest.warns(UserWarning, match="using the older step_000002"):
        assert train(nn.Linear(3, 3), _mse, torch.randn(8, 3), config, two_checkpoints, resume=True).step == 6
    assert checkpoint_problem(checkpoint_path(two_checkpoints, 4)) is None  # rewritten on the way to step 6


def test_a_run_whose_every_checkpoint_is_damaged_is_an_error_not_a_fresh_start(two_checkpoints):
    for step in (2, 4):
        (checkpoint_path(two_checkpoints, step) / STATE_JSON_FILE).write_text("{\"step\": ")
    with pytest.raises(CheckpointDamagedError, match="every checkpoint in .* is damaged"):
        latest_checkpoint(two_checkpoints)


def test_loading_a_truncated_weights_file_names_it(two_checkpoints):
    file = checkpoint_path(two_checkpoints, 4) / MODEL_FILE
    _truncate(file)
    with pytest.raises(CheckpointDamagedError, match=f"{file} is truncated or corrupt"):
        load_weights(nn.Linear(3, 3), checkpoint_path(two_checkpoints, 4))


def test_a_full_disk_while_checkpointing_names_the_checkpoint_and_the_fix(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(checkpoint, "save_model", full_disk)
    with pytest.raises(CheckpointWriteError, match="could not write checkpoint .*step_000001 .* Is the disk full"):
        checkpoint.write_checkpoint(tmp_path, 1, model=nn.Linear(2, 2), ema_model=None, state_tensors={},
                                    state_json={})
    assert not list((tmp_path / checkpoint.CHECKPOINTS).iterdir())  # no half-written folder left behind


# ---------------------------------------------------------------------------------------- the command line
@pytest.mark.parametrize("error, message", [
    (PermissionError(errno.EACCES, "Permission denied", "/runs/x/run.json"),
     "Permission denied: /runs/x/run.json; make that folder writable"),
    (OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.jsonl"),
     "No space left on device: /runs/x/metrics.jsonl; the disk is full"),
    (SafetensorError("Error while deserializing header: invalid header length"), "invalid header length"),
])
def test_os_and_safetensors_errors_are_one_line_with_the_file_and_the_fix(error, message, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(ldm_lab.tasks, "train_target", fail)
    assert cli.main(["train", "lab-class", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_run_json_that_does_not_parse_is_named(tmp_path, capsys):
    (tmp_path / "run.json").write_text('{"target": "lab-cl')
    assert cli.main(["eval", str(tmp_path)]) == 2
    assert f"{tmp_path / 'run.json'} is not valid JSON" in capsys.readouterr().err


def test_a_manifest_that_does_not_parse_is_named(tmp_path):
    (tmp_path / MANIFEST_FILE).write_text("{")
    with pytest.raises(ValueError, match=f"{tmp_path / MANIFEST_FILE} is not valid JSON .*git checkout"):
        read_manifest(tmp_path)


def test_fp64_weights_are_refused_with_the_file_and_the_fix(tmp_path):
    file = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({"conv_in.weight": torch.zeros(2, dtype=torch.float64), "step": torch.zeros(1, dtype=torch.int64)},
              str(file))
    with pytest.raises(ValueError, match=f"{file} holds 1 float64 tensor.*'conv_in.weight'.*v.float()"):
        read_state_dict(file)


# ------------------------------------------------------------------------------------------------ emoji cache
def test_data_fetch_checks_the_unpacked_emoji_files_and_unpacks_damaged_ones_again(tmp_path, monkeypatch):
    folder = tmp_path / "emoji"
    (folder / emoji.IMAGE_DIR).mkdir(parents=True)
    (folder / "emoji.json").write_text("[]")
    Image.new("RGBA", (64, 64)).save(folder / emoji.IMAGE_DIR / "good.png")
    Image.new("RGBA", (64, 64), (255, 0, 0, 255)).save(folder / emoji.IMAGE_DIR / "cut.png")
    _truncate(folder / emoji.IMAGE_DIR / "cut.png")
    (folder / ".complete").touch()
    problems = emoji.damaged_files(folder)
    assert any(problem.startswith("cut.png:") for problem in problems)
    assert not any(problem.startswith("good.png") for problem in problems)

    def no_tarball():
        raise DatasetMissingError("no tarball here")

    monkeypatch.setattr(emoji, "_folder", lambda: folder)
    monkeypatch.setattr(emoji, "_verified_tarball", no_tarball)
    with pytest.warns(UserWarning, match="is damaged"), pytest.raises(DatasetMissingError, match="no tarball"):
        emoji.fetch()  # used to answer "ready" without looking
