"""The ADD training loop on tiny models: one step moves the student's U-Net and the heads and nothing frozen; a
killed-and-resumed run ends where an uninterrupted one does; the student loads back; bad runs say what to do."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from ldm_lab.cli import build_parser
from ldm_lab.distill import (DISTILL_STEPS, ADDConfig, Distiller, build_models, distill, load_student, load_teacher,
                             run_config)
from ldm_lab.distill.timing import step_time_breakdown
from ldm_lab.training import list_checkpoints, read_metrics

from test_distill import parts, tiny_batch, tiny_config, tiny_data, tiny_features, tiny_teacher


def snapshot(models) -> dict[str, list[torch.Tensor]]:
    return {name: [p.detach().clone() for p in params] for name, params in parts(models).items()}


def changed(before: dict, models) -> dict[str, bool]:
    return {name: any(not torch.equal(a, b) for a, b in zip(before[name], params))
            for name, params in parts(models).items()}


def test_one_training_step_moves_the_student_and_the_heads_and_nothing_frozen(tmp_path):
    models = build_models(tiny_teacher(), tiny_config(), tiny_features())
    distiller = Distiller(models, tiny_data(), tiny_config(), tmp_path)
    before = snapshot(models)
    record = distiller.train_step(tiny_batch())
    assert changed(before, models) == {"student U-Net": True, "heads": True, "feature network": False,
                                       "teacher": False, "first stage": False, "text tower": False}
    # Step 0 is a logging step: the record says how strongly each weighted term pulls the student.
    assert set(record) == {"loss", "adversarial", "distillation", "grad_norm", "lr", "discriminator", "r1",
                           "grad_norm_adversarial", "grad_norm_distillation"}
    assert all(torch.isfinite(torch.tensor(v)) for v in record.values())
    ema = distiller.ema.model.unet.state_dict()
    assert any(not torch.equal(ema[k], v) for k, v in models.teacher.unet.state_dict().items())  # the EMA moved too


def run(run_dir, steps: int, resume: bool = False, teacher=None, **add):
    return distill(teacher if teacher is not None else tiny_teacher(), run_dir, tiny_config(steps, **add),
                   resume=resume, features=tiny_features(), data=tiny_data())


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    whole = run(tmp_path / "whole", 2)
    run(tmp_path / "split", 1)
    resumed = run(tmp_path / "split", 2, resume=True)
    assert resumed.step == whole.step == 2
    for key, value in whole.models.trainable.state_dict().items():
        assert torch.equal(resumed.models.trainable.state_dict()[key], value), key
    for key, value in whole.ema_student.state_dict().items():
        assert torch.equal(resumed.ema_student.state_dict()[key], value), key
    metrics = read_metrics(tmp_path / "split")
    assert [r["step"] for r in metrics] == [1, 2] and {"discriminator", "r1", "distillation"} <= set(metrics[0])
    assert [step for step, _ in list_checkpoints(tmp_path / "split")] == [1, 2]
    record = json.loads((tmp_path / "split" / "distill.json").read_text())
    assert record["config"]["add"]["distillation_weight"] == 2.5

    student = load_student(tmp_path / "split", teacher=tiny_teacher())
    for key, value in whole.ema_student.state_dict().items():
        assert torch.equal(student.state_dict()[key], value), key
    assert student.schedule.has_zero_terminal_snr and not student.training


def test_a_run_stopped_by_its_time_limit_keeps_a_checkpoint(tmp_path):
    config = tiny_config(50)
    config = replace(config, train=replace(config.train, time_limit_s=1e-3))
    result = distill(tiny_teacher(), tmp_path, config, features=tiny_features(), data=tiny_data())
    assert result.stopped_by == "time_limit" and result.step == 1  # the limit is checked after each step
    assert [step for step, _ in list_checkpoints(tmp_path)] == [result.step]


def test_bad_runs_say_what_to_do(tmp_path):
    run(tmp_path, 1)
    with pytest.raises(FileExistsError, match="--resume"):
        run(tmp_path, 2)
    with pytest.raises(ValueError, match="same teacher and settings"):
        run(tmp_path, 2, resume=True, distillation_weight=1.0)
    with pytest.raises(ValueError, match="teacher in memory"):
        load_student(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "distill.json").write_text((tmp_path / "distill.json").read_text())
        load_student(tmp_path / "empty", teacher=tiny_teacher())
    not_text_to_image = lambda *args, **kwargs: SimpleNamespace(model=torch.nn.Linear(1, 1))  # noqa: E731
    with pytest.raises(ValueError, match="not a text-to-image"):
        load_teacher("runs/some-classifier", torch.device("cpu"), loader=not_text_to_image)


def test_adversarial_only_runs_skip_nothing_and_distillation_only_runs_skip_the_discriminator(tmp_path):
    models = build_models(tiny_teacher(), tiny_config(adversarial_weight=0.0), tiny_features())
    distiller = Distiller(models, tiny_data(), tiny_config(adversarial_weight=0.0), tmp_path)
    heads_before = [p.detach().clone() for p in models.heads.parameters()]
    record = distiller.train_step(tiny_batch())
    assert "discriminator" not in record and record["adversarial"] == 0.0
    # The only term's gradient is the whole gradient: its norm is the (unclipped) total norm.
    assert "grad_norm_adversarial" not in record
    assert record["grad_norm_distillation"] == pytest.approx(record["grad_norm"], rel=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(heads_before, models.heads.parameters()))
    assert ADDConfig(distillation_weight=0.0).adversarial_weight == 1.0


def test_the_step_time_breakdown_names_every_phase_and_adds_up():
    table = step_time_breakdown(tiny_teacher(), batch_size=2, steps=1, config=tiny_config(), features=tiny_features(),
                                data=tiny_data())
    phases = set(table.index)
    assert {"student forward", "teacher (CFG) + decode target", "student backward (U-Net, decoder, feature network)",
            "discriminator step: heads (forward)",
            "discriminator step: R1 gradient (forward of the penalty)", "step (total)"} <= phases
    assert table.loc["step (total)", "seconds"] > 0
    for column in ("seconds", "cpu_seconds"):
        assert table.drop(index="step (total)")[column].sum() == pytest.approx(table.loc["step (total)", column])
    assert table["share"].drop(index="step (total)").sum() == pytest.approx(1.0)


def test_the_command_line_builds_the_run_config():
    args = build_parser().parse_args(["distill", "lab-emoji", "--out", "runs/add", "--steps", "7", "--batch-size", "4",
                                      "--time-limit", "60", "--student-steps", "2", "--device", "cpu"])
    assert args.func.__name__ == "_distill" and args.teacher == "lab-emoji"
    config = run_config(steps=args.steps, batch_size=args.batch_size, time_limit_s=args.time_limit,
                        device=args.device, student_steps=args.student_steps)
    assert (config.train.steps, config.train.batch_size, config.train.time_limit_s) == (7, 4, 60.0)
    assert config.add.student_steps == 2 and config.add.distillation_weight == 2.5
    assert run_config().train.steps == DISTILL_STEPS["smoke"]  # the tests' profile
    with pytest.raises(SystemExit):
        build_parser().parse_args(["distill", "lab-emoji"])  # --out is required


def test_sample_grids_show_the_ema_student_at_one_and_four_steps(tmp_path):
    models = build_models(tiny_teacher(), tiny_config(), tiny_features())
    distiller = Distiller(models, tiny_data(), tiny_config(), tmp_path)
    path = distiller.sample_grid()
    assert path == tmp_path / "samples" / "step_000000.png"
    width, height = Image.open(path).size
    assert (width, height) == (2 + 2 * 34, 2 + 2 * 34)  # 2 prompts x (1 step, 4 steps) of 32x32 with 2-px borders
    assert not distiller.ema.model.training and models.student.training  # the raw student is left training
