"""Knowledge distillation (BK-SDM's output term): the loss, the student's start from its teacher, the checks."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from ldm_lab.diffusion import DiffusionLoss, DistillationLoss, make_schedule
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.presets import get_preset
from ldm_lab.tasks.distillation import check_teacher, init_from_teacher


def tiny_net(width: int) -> nn.Module:
    """x_t, t -> a prediction of x_t's shape, with a hidden width to cut."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner, self.outer = nn.Conv2d(2, width, 1), nn.Conv2d(width, 2, 1)

        def forward(self, x_t, t):
            return self.outer(torch.tanh(self.inner(x_t)) * (1 + t.float().view(-1, 1, 1, 1) / 1000))
    return Net()


@pytest.fixture
def task():
    return DiffusionLoss(make_schedule("scaled_linear"), "v", snr_gamma=5.0)


def test_with_no_weight_on_the_teacher_the_loss_is_the_task_loss(task):
    torch.manual_seed(0)
    student, teacher, x0 = tiny_net(4), tiny_net(4), torch.randn(3, 2, 4, 4)
    ours = DistillationLoss(task, output_weight=0.0)(student, teacher, x0, generator=torch.Generator().manual_seed(1))
    assert ours == task(student, x0, generator=torch.Generator().manual_seed(1))


def test_a_student_equal_to_its_teacher_pays_only_the_task_loss(task):
    torch.manual_seed(0)
    student, x0 = tiny_net(4), torch.randn(3, 2, 4, 4)
    ours = DistillationLoss(task, output_weight=5.0)(student, student, x0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours, task(student, x0, generator=torch.Generator().manual_seed(1)))


def test_the_teacher_term_trains_the_student_and_never_the_teacher(task):
    torch.manual_seed(0)
    student, teacher, x0 = tiny_net(4), tiny_net(4), torch.randn(3, 2, 4, 4)
    gen = torch.Generator().manual_seed(1)
    with_teacher = DistillationLoss(task, output_weight=1.0)(student, teacher, x0, generator=gen)
    with_teacher.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    # Pulling towards another network's output adds to the loss: the teacher term is a distance, >= 0.
    assert with_teacher > task(student, x0, generator=torch.Generator().manual_seed(1))


def test_a_negative_teacher_weight_is_refused(task):
    with pytest.raises(ValueError, match="output_weight must be >= 0"):
        DistillationLoss(task, output_weight=-1.0)


def test_the_student_starts_from_the_teachers_tensors_whole_or_cut_to_its_widths():
    torch.manual_seed(0)
    teacher, student = tiny_net(8), tiny_net(4)
    cut = init_from_teacher(student, teacher)
    assert sorted(cut) == ["inner.bias", "inner.weight", "outer.weight"]
    torch.testing.assert_close(student.inner.weight, teacher.inner.weight[:4])
    torch.testing.assert_close(student.outer.weight, teacher.outer.weight[:, :4])
    torch.testing.assert_close(student.outer.bias, teacher.outer.bias)  # same shape: copied whole
    # A teacher narrower than the student leaves the student's own initialisation.
    before = tiny_net(8)
    after = tiny_net(8)
    after.load_state_dict(before.state_dict())
    assert init_from_teacher(after, tiny_net(4)) == []
    torch.testing.assert_close(after.inner.weight, before.inner.weight)


def test_lab_emoji_starts_from_lab_emoji_large_with_its_first_two_levels_whole():
    torch.manual_seed(0)
    teacher = LatentDiffusion(LatentDiffusionConfig("lab-emoji-large"))
    teacher.latent_scale.fill_(0.8)  # as measured by its training
    student = LatentDiffusion(LatentDiffusionConfig("lab-emoji"))
    assert sum(p.numel() for p in student.unet.parameters()) < 0.45 * sum(p.numel() for p in teacher.unet.parameters())
    cut = init_from_teacher(student, teacher)
    assert cut and not any(name.startswith(("first_stage.", "conditioner.")) for name in cut)
    torch.testing.assert_close(student.unet.conv_in.weight, teacher.unet.conv_in.weight)
    check_teacher(student, teacher)  # the latent scale came along


def test_a_teacher_of_another_prediction_or_latent_scale_is_refused():
    torch.manual_seed(0)
    student = LatentDiffusion(LatentDiffusionConfig("lab-emoji"))
    eps_teacher = LatentDiffusion(LatentDiffusionConfig(replace(get_preset("lab-emoji-large"), prediction="eps")))
    with pytest.raises(ValueError, match="another prediction"):
        check_teacher(student, eps_teacher)
    teacher = LatentDiffusion(LatentDiffusionConfig("lab-emoji-large"))
    with pytest.raises(ValueError, match="never trained"):
        check_teacher(student, teacher)
    teacher.latent_scale.fill_(0.5)
    student.latent_scale.fill_(0.8)
    with pytest.raises(ValueError, match="latent scale"):
        check_teacher(student, teacher)
