"""Latent consistency distillation (the baseline of ADD's comparison) and Tab. 1's ablation arms, on the tiny
models of test_distill: LCM's timesteps and boundary condition, the teacher's DDIM step, what its loss trains, its
target network's EMA, a resumed LCM run ending where an uninterrupted one does; each arm changes what it says."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ldm_lab.cli import build_parser
from ldm_lab.diffusion.parameterisation import add_noise
from ldm_lab.distill import (ARMS, DistillConfig, LCMConfig, LCMModels, arm_config, build_models, distill,
                             lcm_sampling, lcm_timesteps, load_student, student_config)
from ldm_lab.distill.arms import REFERENCE
from ldm_lab.distill.lcm import boundary_coefficients, consistency_function, ddim_grid, teacher_ddim_step

from test_distill import CAPTIONS, TINY_TRAIN, tiny_batch, tiny_data, tiny_teacher


def lcm_config(steps: int = 2, **lcm) -> DistillConfig:
    return DistillConfig(method="lcm", lcm=LCMConfig(**lcm), train=replace(TINY_TRAIN, steps=steps),
                         sample_prompts=CAPTIONS[:2])


@pytest.fixture
def models():
    torch.manual_seed(0)
    return build_models(tiny_teacher(), lcm_config()).train()


def test_lcm_timesteps_are_its_schedulers():
    assert ddim_grid(50)[:3] == (19, 39, 59) and ddim_grid(50)[-1] == 999
    assert lcm_timesteps(4) == (999, 759, 519, 279)
    assert lcm_timesteps(2) == (999, 499) and lcm_timesteps(1) == (999,)
    settings = lcm_sampling(4, seed=3)
    assert (settings.sampler, settings.guidance_scale, settings.timesteps) == ("consistency", 1.0, (999, 759, 519, 279))
    with pytest.raises(ValueError, match="1..50 steps"):
        lcm_timesteps(51)


def test_the_boundary_condition_makes_f_the_identity_at_t_0_and_x0_elsewhere():
    c_skip, c_out = boundary_coefficients(torch.tensor([0, 19, 999]))
    assert c_skip[0] == 1 and c_out[0] == 0
    assert c_skip[1:].max() < 1e-4 and (c_out[1:] - 1).abs().max() < 1e-4


def test_the_student_keeps_the_teachers_schedule_and_weights(models):
    assert not models.student.schedule.has_zero_terminal_snr
    for key, value in models.teacher.unet.state_dict().items():
        assert torch.equal(models.student.unet.state_dict()[key], value)
        assert torch.equal(models.target.unet.state_dict()[key], value)


def test_the_teachers_ddim_step_lands_on_its_clean_estimate_renoised(models):
    """One guided DDIM step from t to t itself returns its input: x0 and eps re-combined at the same level."""
    torch.manual_seed(0)
    prepared = models.prepare(tiny_batch())
    again = teacher_ddim_step(models.teacher, prepared.z, prepared.t, prepared.t, prepared.cond, prepared.uncond, 3.0)
    torch.testing.assert_close(again, prepared.z, atol=1e-4, rtol=1e-4)
    assert (prepared.t - prepared.t_prev <= 20).all() and (prepared.t_prev >= 0).all()


def test_the_consistency_loss_trains_the_student_only(models):
    torch.manual_seed(0)
    losses = models.student_losses(models.prepare(tiny_batch()))
    losses.total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in models.student.unet.parameters())
    frozen = [*models.teacher.parameters(), *models.target.parameters(), *models.student.first_stage.parameters(),
              *models.student.conditioner.parameters()]
    assert all(p.grad is None for p in frozen)


def test_the_target_network_follows_the_student_by_its_ema_rate(models):
    target = next(models.target.unet.parameters())
    online = next(models.student.unet.parameters())
    before = target.detach().clone()
    with torch.no_grad():
        online.add_(1.0)
    models.update_target()
    torch.testing.assert_close(target, before + 0.05)      # (1 - 0.95) of the step


def test_at_t_0_the_consistency_function_returns_its_input(models):
    z = torch.randn(2, 4, 8, 8)
    cond = models.student.condition({"caption": ["sun", "rocket"]}, 2)
    torch.testing.assert_close(consistency_function(models.student, z, torch.zeros(2, dtype=torch.long), cond), z)


def test_a_resumed_lcm_run_ends_where_an_uninterrupted_one_does_and_loads_back(tmp_path):
    def run(folder, steps, resume=False):
        return distill(tiny_teacher(), tmp_path / folder, lcm_config(steps), resume=resume, data=tiny_data())

    whole = run("whole", 2)
    run("split", 1)
    resumed = run("split", 2, resume=True)
    assert isinstance(resumed.models, LCMModels)
    for key, value in whole.models.trainable.state_dict().items():
        assert torch.equal(resumed.models.trainable.state_dict()[key], value), key
    assert student_config(tmp_path / "split").method == "lcm"
    student = load_student(tmp_path / "split", teacher=tiny_teacher())
    assert not student.schedule.has_zero_terminal_snr
    for key, value in whole.ema_student.state_dict().items():
        assert torch.equal(student.state_dict()[key], value), key


def test_each_arm_changes_one_thing_from_its_reference():
    def differences(a: DistillConfig, b: DistillConfig) -> set[str]:
        fields = {"method": (a.method, b.method)} if a.method != b.method else {
            f"add.{k}": (v, getattr(b.add, k)) for k, v in vars(a.add).items() if getattr(b.add, k) != v}
        return set(fields)

    assert differences(arm_config("adversarial-only"), arm_config("add")) == {"add.distillation_weight"}
    assert differences(arm_config("distillation-only"), arm_config("add")) == {"add.adversarial_weight"}
    assert differences(arm_config("random-init"), arm_config(REFERENCE["c"])) == {"add.pretrained_student"}
    assert differences(arm_config("teacher-4-steps"), arm_config(REFERENCE["f"])) == {"add.teacher_steps"}
    assert arm_config("lcm").method == "lcm" and arm_config("add") == DistillConfig()
    plain = arm_config("add-plain-heads")
    assert (plain.discriminator.augment, plain.discriminator_lr, plain.add) == (False, 1e-3, arm_config("add").add)
    assert {arm.row for arm in ARMS.values()} == {"b", "c", "d", "f", "baseline"}


def test_an_unknown_arm_names_the_valid_ones():
    with pytest.raises(ValueError, match="Did you mean 'random-init'.*Valid ADD ablation arms"):
        arm_config("random_init")


def test_the_command_line_distils_an_arm():
    args = build_parser().parse_args(["distill", "lab-emoji", "--out", "x", "--arm", "lcm", "--steps", "5"])
    assert args.arm == "lcm" and args.steps == 5
