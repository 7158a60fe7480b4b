"""Knowledge distillation of a trained latent diffusion model into a smaller U-Net (BK-SDM, Kim et al. 2023): the
student starts from the teacher's weights, cut to its own widths, and learns the data and the teacher's outputs.

    task = DistillationTask(DiffusionTask(sample_prompts=("red apple",)), teacher, output_weight=1.0)
    train(student, task, data, config, run_dir)     # ||v - v_S||^2 + ||v_T - v_S||^2 at the same z_t, t, prompt

``ldm-lab train lab-emoji-distilled --teacher runs/lab-emoji-large`` runs it for a target that names a
:class:`KnowledgeDistillation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ldm_lab.diffusion import DistillationLoss
from ldm_lab.models import LatentDiffusion
from ldm_lab.tasks.diffusion import DiffusionTask


@dataclass(frozen=True)
class KnowledgeDistillation:
    """How a diffusion target learns from a trained teacher instead of from its data alone."""

    teacher: str                     # the target whose trained model teaches (its run, or its shipped model):
                                     # same first stage, prediction, schedule and conditions, a larger U-Net
    output_weight: float = 1.0       # weight of the distance to the teacher's output (BK-SDM's lambda_OutKD: 1)


def schedule_of(model: LatentDiffusion) -> tuple:
    """What fixes a model's noise levels: its preset's schedule, number of timesteps and terminal SNR."""
    preset = model.preset
    return preset.schedule, preset.num_train_timesteps, preset.zero_terminal_snr


def check_teacher(student: LatentDiffusion, teacher: LatentDiffusion) -> None:
    """A teacher's outputs are targets for the student only when both read the same inputs and predict the same
    quantity: the same latent shape and scale, prediction, noise schedule and conditions."""
    pairs = {"latent shape": (student.latent_shape, teacher.latent_shape),
             "prediction": (student.preset.prediction, teacher.preset.prediction),
             "noise schedule": (schedule_of(student), schedule_of(teacher)),
             "conditions": (student.condition_keys, teacher.condition_keys)}
    for what, (mine, its) in pairs.items():
        if mine != its:
            raise ValueError(f"the teacher {teacher.preset.name} has another {what} ({its}) than the student "
                             f"{student.preset.name} ({mine}): distil from a teacher of the same family, trained "
                             "on the same first stage.")
    if teacher.needs_latent_scale:
        raise ValueError(f"the teacher {teacher.preset.name} has not measured its latent scale: it was never "
                         "trained. Distil from a trained run or shipped model.")
    if not torch.allclose(student.latent_scale, teacher.latent_scale):
        raise ValueError(f"the teacher's latent scale ({float(teacher.latent_scale):.4g}) is not the student's "
                         f"({float(student.latent_scale):.4g}): start the student from the teacher "
                         "(init_from_teacher) so it reads the teacher's latents.")


def init_from_teacher(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy the teacher's weights into the student: each tensor of the same name whole when the shapes agree, else
    its leading slice along every axis (the first channels of a narrower layer: structured pruning's simplest
    choice, which keeps the channels a layer reads consistent with those the layer before it writes). Returns
    the names of the student's tensors that were cut; a tensor the teacher lacks or is smaller in keeps its
    initialisation."""
    taught = teacher.state_dict()
    cut = []
    with torch.no_grad():
        for name, tensor in student.state_dict().items():
            source = taught.get(name)
            if source is None or source.dim() != tensor.dim():
                continue
            if source.shape == tensor.shape:
                tensor.copy_(source)
            elif all(s >= t for s, t in zip(source.shape, tensor.shape, strict=True)):
                tensor.copy_(source[tuple(slice(0, n) for n in tensor.shape)])
                cut.append(name)
    return cut


class DistillationTask:
    """``task``'s training batches and sample grids, with :class:`~ldm_lab.diffusion.DistillationLoss` towards a
    frozen ``teacher`` as the objective. The teacher is not a submodule of the model trained, so it is neither
    optimised nor checkpointed."""

    def __init__(self, task: DiffusionTask, teacher: LatentDiffusion, output_weight: float = 1.0) -> None:
        self.task, self.output_weight = task, output_weight
        self.teacher = teacher.eval().requires_grad_(False)

    def loss(self, model: LatentDiffusion, batch: dict) -> Tensor:
        z0, cond = self.task.training_inputs(model, batch)
        objective = DistillationLoss(self.task.objective(model), self.output_weight)
        return objective(model, self.teacher.to(z0.device), z0, **cond)

    def sample(self, model: LatentDiffusion) -> Tensor:
        return self.task.sample(model)
