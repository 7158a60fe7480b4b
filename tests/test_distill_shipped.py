"""A distilled student ships as its U-Net alone, beside the shipped teacher it shares the rest with: it loads back
to the trained student (to fp16 rounding), refuses a teacher retrained since, and the lab-model loader points to
the student loader."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from ldm_lab.checkpoints import CheckpointError, ManifestEntry, read_manifest, update_manifest
from ldm_lab.distill import distill, load_student, student_config
from ldm_lab.distill.shipped import export_student, load_shipped_student
from ldm_lab.shipping.load import load_shipped

from test_distill import tiny_config, tiny_data, tiny_features, tiny_teacher

TEACHER = "tiny-teacher"


def teacher_entry(sha256: str) -> ManifestEntry:
    return ManifestEntry(file="tiny_teacher.safetensors", sha256=sha256, size_bytes=0, command="(test)",
                         git_commit="(test)", data="(test)", metrics={}, config={}, training_seconds=0.0,
                         device="cpu", target="lab-emoji", steps=10)


def tiny_loader(reference, device="cpu", ema=True):
    assert reference == TEACHER
    return SimpleNamespace(model=tiny_teacher())


@pytest.fixture
def shipped(tmp_path):
    """A 2-update tiny ADD run whose teacher is recorded as the shipped TEACHER, exported as tiny-turbo."""
    run = distill(tiny_teacher(), tmp_path / "run", tiny_config(2), features=tiny_features(), data=tiny_data())
    record = json.loads((tmp_path / "run" / "distill.json").read_text())
    (tmp_path / "run" / "distill.json").write_text(json.dumps(record | {"teacher": TEACHER}))
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    update_manifest({TEACHER: teacher_entry("a" * 64)}, folder)
    entry = export_student(tmp_path / "run", "tiny-turbo", "ldm-lab distill (test)", "cpu (test)", folder)
    return run, folder, entry


def test_a_shipped_student_is_its_u_net_and_loads_back_to_the_trained_student(shipped):
    run, folder, entry = shipped
    assert (entry.teacher, entry.teacher_sha256, entry.steps) == (TEACHER, "a" * 64, 2)
    assert "CPU minutes" in entry.device and entry.target is None
    student = load_shipped_student("tiny-turbo", folder=folder, loader=tiny_loader)
    assert student.schedule.has_zero_terminal_snr and not student.training
    for key, value in run.ema_student.unet.state_dict().items():
        torch.testing.assert_close(student.unet.state_dict()[key], value, atol=2e-3, rtol=2e-3)


def test_a_student_refuses_a_teacher_retrained_since(shipped):
    _, folder, _ = shipped
    update_manifest({TEACHER: teacher_entry("b" * 64)}, folder)
    with pytest.raises(CheckpointError, match="distilled from another 'tiny-teacher'.*Distil it again"):
        load_shipped_student("tiny-turbo", folder=folder, loader=tiny_loader)


def test_the_lab_model_loader_points_to_the_student_loader(shipped):
    _, folder, _ = shipped
    with pytest.raises(CheckpointError, match=r"few-step student.*load_student\('tiny-turbo'\)"):
        load_shipped("tiny-turbo", folder=folder)
    with pytest.raises(CheckpointError, match="unknown shipped student 'tiny-turb'"):
        load_shipped_student("tiny-turb", folder=folder)
    assert set(read_manifest(folder)) == {TEACHER, "tiny-turbo"}


def test_every_checkpoint_records_the_wall_time_so_far(tmp_path):
    from dataclasses import replace

    from ldm_lab.training.checkpoint import checkpoint_path, read_trainer_state

    config = tiny_config(2)
    config = replace(config, train=replace(config.train, checkpoint_every=1))
    distill(tiny_teacher(), tmp_path / "run", config, features=tiny_features(), data=tiny_data())
    first, second = (read_trainer_state(checkpoint_path(tmp_path / "run", step))[1]["elapsed_s"] for step in (1, 2))
    assert 0 < first < second   # written mid-session, not only the earlier sessions' time
