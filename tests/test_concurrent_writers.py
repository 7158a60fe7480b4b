"""Two processes writing into the same place: the shipped manifest keeps every entry and stays valid JSON, and a
second trainer on a run directory another process trains in is refused."""

import contextlib
import json
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from ldm_lab.checkpoints import MANIFEST_FILE, ManifestEntry, read_manifest, save_checkpoint
from ldm_lab.files import atomic_write_text
from ldm_lab.training import TrainConfig, train
from ldm_lab.training.checkpoint import CHECKPOINTS, RunDirLockedError, list_checkpoints, run_dir_lock

ENTRIES_PER_WRITER = 100


def _entry(name: str) -> ManifestEntry:
    return ManifestEntry(file=f"{name}.safetensors", sha256="", size_bytes=0, command="test", git_commit="test",
                         data="none", metrics={}, config={}, training_seconds=0.0, device="cpu")


def _ship_many(folder: str, writer: int, start: multiprocessing.Event) -> None:
    start.wait()
    for i in range(ENTRIES_PER_WRITER):
        name = f"writer{writer}-{i}"
        save_checkpoint(name, {"w": torch.zeros(2)}, _entry(name), folder=Path(folder))


def test_two_processes_shipping_at_once_keep_a_valid_manifest_with_both_entries(tmp_path):
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    writers = [context.Process(target=_ship_many, args=(str(tmp_path), w, start)) for w in range(2)]
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(timeout=120)
    assert [writer.exitcode for writer in writers] == [0, 0]
    json.loads((tmp_path / MANIFEST_FILE).read_text())  # valid JSON
    expected = {f"writer{w}-{i}" for w in range(2) for i in range(ENTRIES_PER_WRITER)}
    assert set(read_manifest(tmp_path)) == expected
    assert not list(tmp_path.glob(f"*{MANIFEST_FILE}.partial")) and not list(tmp_path.glob(".tmp-*"))


def _hold_run_dir(run_dir: str, locked: multiprocessing.Event, release: multiprocessing.Event) -> None:
    with run_dir_lock(run_dir):
        locked.set()
        release.wait(timeout=60)


@contextlib.contextmanager
def held_by_another_process(run_dir: Path) -> Iterator[None]:
    """While inside, a spawned process holds ``run_dir``'s training lock."""
    context = multiprocessing.get_context("spawn")
    locked, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_run_dir, args=(str(run_dir), locked, release))
    holder.start()
    try:
        assert locked.wait(timeout=60)
        yield
    finally:
        release.set()
        holder.join(timeout=60)


def _mse(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch).pow(2).mean()


def test_a_second_trainer_on_a_run_directory_another_process_trains_in_is_refused(tmp_path):
    with held_by_another_process(tmp_path):
        config = TrainConfig(steps=2, batch_size=2, device="cpu", ema_decay=0, log_every=1)
        with pytest.raises(RunDirLockedError, match="another process is training in"):
            train(nn.Linear(3, 3), _mse, torch.randn(8, 3), config, tmp_path)
        assert not (tmp_path / "config.json").exists() and not list_checkpoints(tmp_path)
    # Once the first process is gone, the directory is free again.
    config = TrainConfig(steps=2, batch_size=2, device="cpu", ema_decay=0, log_every=1)
    assert train(nn.Linear(3, 3), _mse, torch.randn(8, 3), config, tmp_path).step == 2


def test_the_lock_is_reentrant_within_a_process_and_clears_orphaned_temporary_checkpoints(tmp_path):
    orphan = tmp_path / CHECKPOINTS / ".tmp-step_000004-12345"
    orphan.mkdir(parents=True)
    (orphan / "model.safetensors").write_bytes(b"half")
    with run_dir_lock(tmp_path), run_dir_lock(tmp_path):
        assert not orphan.exists()


def test_atomic_text_writes_use_a_temporary_file_of_their_own(tmp_path):
    target = tmp_path / "config.json"
    stale = tmp_path / f".tmp-config.json-{os.getpid()}"
    stale.mkdir()  # a name the old scheme (one fixed temporary name per process) would have collided with
    atomic_write_text(target, "{}")
    assert target.read_text() == "{}"


def test_a_second_ldm_lab_train_into_a_busy_out_folder_exits_2_and_says_why(tmp_path, capsys):
    from ldm_lab.cli import main

    with held_by_another_process(tmp_path):
        assert main(["train", "lab-class", "--steps", "1", "--out", str(tmp_path), "--device", "cpu"]) == 2
        assert "another process is training in" in capsys.readouterr().err
        assert not (tmp_path / "run.json").exists()
