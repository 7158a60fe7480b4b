"""What a training target is: a model, its task, its dataset and its training defaults (kept here, keyed by name,
so the presets stay pure architecture). ``steps`` says how long a run is in each profile. The targets themselves
are in their families' modules of ``ldm_lab.tasks.targets``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ldm_lab.data import DATASETS, build_dataset, collate
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.nn.autoencoder import AutoencoderConfig
from ldm_lab.presets import get_preset
from ldm_lab.tasks.autoencoder import AutoencoderGAN, AutoencoderLossConfig, AutoencoderTask
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.tasks.distillation import KnowledgeDistillation
from ldm_lab.training import SamplingTask, TrainConfig

PROFILE_STEPS = {"smoke": 20, "laptop": 3000, "gpu": 50_000}  # optimizer steps of a run in each profile


def cycling_labels(dataset: str, num: int = 16) -> tuple[int, ...]:
    """Labels of a class-conditional sample grid: every class of ``dataset`` in turn, 0, 1, ..., 0, 1, ..."""
    return tuple(i % DATASETS[dataset].num_classes for i in range(num))


class TrainTargetBase(ABC):
    """What every training target has, and what a caller may ask of any of them without checking its kind. The
    targets below are frozen dataclasses that declare these fields; a default here holds for targets that do not
    (a first stage trains on no first stage and caches no latents)."""

    name: str                        # what ``ldm-lab train NAME`` and ``get_target`` call it
    description: str                 # one line, shown in listings and in the error for an unknown name
    dataset: str                     # a name in ldm_lab.data.DATASETS
    train: TrainConfig               # defaults; the command line overrides steps, batch size, device, time limit
    steps: dict[str, int]            # optimizer steps of a run in each profile
    resolution: tuple[int, int]      # (height, width) of the training images
    first_stage: str | None = None   # the AutoencoderTarget whose trained run it trains on (None: none)
    cache_latents: bool = False      # encode the training set with the frozen first stage once, before training
    distillation: KnowledgeDistillation | None = None  # the trained teacher it learns from (None: the data alone)
    starts_from: str | None = None   # the target whose trained model it is fine-tuned from (None: fresh weights)
    freeze_encoder: bool = False     # a first stage that trains only its decoder, behind starts_from's encoder

    @property
    def teacher(self) -> str | None:
        """The target whose trained model teaches this one (None: it learns from its data alone)."""
        return self.distillation.teacher if self.distillation is not None else None

    @property
    def sources(self) -> tuple[str, ...]:
        """The targets whose trained models this one needs before it can train: its teacher, what it starts from."""
        return tuple(name for name in (self.teacher, self.starts_from) if name is not None)

    @property
    def needs_first_stage(self) -> bool:
        """A latent model trains on a first stage trained before (the ``first_stage`` target's run)."""
        return self.first_stage is not None

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The untrained model; its ``load_pretrained()`` fills in frozen pretrained parts (a no-op if it has none)."""

    @abstractmethod
    def build_task(self) -> SamplingTask:
        """The training objective, validation and sample grids that ``ldm_lab.training.train`` runs."""


@dataclass(frozen=True)
class DiffusionTarget(TrainTargetBase):
    """A diffusion model of a lab preset: ``LatentDiffusion`` + ``DiffusionTask`` on ``dataset``."""

    name: str
    description: str
    dataset: str                     # a name in ldm_lab.data.DATASETS: "fashion_mnist", "emoji" or "shapes"
    model: LatentDiffusionConfig
    task: DiffusionTask              # also the default sampler, steps and guidance of ``ldm-lab sample``/``eval``
    train: TrainConfig               # defaults; the command line overrides steps, batch size, device, time limit
    steps: dict[str, int] = field(default_factory=lambda: dict(PROFILE_STEPS))
    first_stage: str | None = None   # latent models: the AutoencoderTarget whose trained run is the frozen E/D
    sample_from_validation: bool = False  # sample grids conditioned on the first validation items (boxes, maps)
    cache_latents: bool = False      # encode the training set with the frozen first stage once, before training
                                     # (ldm_lab.tasks.latent_cache), instead of at every step
    distillation: KnowledgeDistillation | None = None  # learn from a trained teacher's outputs as well as from
                                     # the data (ldm_lab.tasks.distillation); None: from the data alone
    starts_from: str | None = None   # the target (same architecture) whose trained model this one is fine-tuned
                                     # from (``--init-from`` its run or shipped model); None: fresh weights

    def __post_init__(self) -> None:
        latent = get_preset(self.model.preset).autoencoder is not None
        if latent != (self.first_stage is not None):
            raise ValueError(f"target {self.name}: a latent preset names the autoencoder target of its first stage "
                             "(first_stage=...), a pixel-space preset names none.")

    @property
    def resolution(self) -> tuple[int, int]:
        return get_preset(self.model.preset).resolution

    def build_model(self) -> LatentDiffusion:
        return LatentDiffusion(self.model)

    def build_task(self) -> DiffusionTask:
        if not self.sample_from_validation:
            return self.task
        return replace(self.task, sample_conditions=self.sample_conditions(self.task.sample_num))

    def sample_conditions(self, num: int) -> dict:
        """Conditions of ``num`` sample images: the task's labels or prompts, repeated, or (with
        ``sample_from_validation``) those of the first ``num`` validation items."""
        task = self.task
        if self.sample_from_validation:
            val = build_dataset(self.dataset, "val", self.resolution)
            batch = collate([val[i] for i in range(num)])
            return {key: batch[key] for key in LatentDiffusion(self.model).condition_keys if key in batch}
        if task.sample_labels is not None:
            return {"label": torch.tensor([task.sample_labels[i % len(task.sample_labels)] for i in range(num)])}
        if task.sample_prompts is not None:
            return {"caption": [task.sample_prompts[i % len(task.sample_prompts)] for i in range(num)]}
        return {}


@dataclass(frozen=True)
class AutoencoderTarget(TrainTargetBase):
    """A first stage: ``AutoencoderGAN`` + ``AutoencoderTask`` on ``dataset`` (trained on no first stage)."""

    name: str
    description: str
    dataset: str
    autoencoder: AutoencoderConfig   # the architecture (the first stage of a latent preset)
    loss: AutoencoderLossConfig
    train: TrainConfig
    steps: dict[str, int] = field(default_factory=lambda: dict(PROFILE_STEPS))
    resolution: tuple[int, int] = (64, 64)
    preview_size: int = 8            # validation images shown (above their reconstructions) in sample grids
    crop: int | None = None          # train on random crop x crop windows of the images (None: whole images)
    starts_from: str | None = None   # the first-stage target whose trained model this one starts from (None: fresh)
    freeze_encoder: bool = False     # keep starts_from's encoder, frozen, and train a decoder behind it (its own
                                     # architecture may differ): the latent space, and the latent models trained
                                     # in it, stay valid

    def __post_init__(self) -> None:
        if self.freeze_encoder and self.starts_from is None:
            raise ValueError(f"target {self.name}: freeze_encoder keeps the encoder of a trained first stage; name "
                             "it with starts_from=...")

    def build_model(self) -> AutoencoderGAN:
        return AutoencoderGAN(self.autoencoder, self.loss)

    def build_task(self) -> AutoencoderTask:
        val = build_dataset(self.dataset, "val", self.resolution)
        return AutoencoderTask(torch.stack([val[i]["image"] for i in range(self.preview_size)]), crop=self.crop)


TrainTarget = DiffusionTarget | AutoencoderTarget
