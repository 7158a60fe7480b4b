"""What ``ldm-lab train NAME`` can train: the lab diffusion presets and the first stage they use.

A target names a model, its task, its dataset and its training defaults (kept here, keyed by name, so the
presets stay pure architecture). ``steps`` says how long a run is in each profile.

    target = get_target("lab-class")
    model, task = target.build_model(), target.build_task()
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace

import torch

from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.nn.autoencoder import AutoencoderConfig
from ldm_lab.presets import LAB_AUTOENCODER, get_preset
from ldm_lab.tasks.autoencoder import AutoencoderGAN, AutoencoderLossConfig, AutoencoderTask
from ldm_lab.data import build_dataset
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.training import TrainConfig

EMOJI_PROMPTS = ("grinning face", "red apple", "cat face", "rocket", "sun", "red heart", "pizza", "dog face",
                 "tree", "car", "ghost", "star", "fire", "banana", "house", "flag of france")
SHAPES_PROMPTS = ("a large red circle", "a small blue square", "a large green triangle", "a medium yellow star",
                  "a large red circle left of a small blue square", "a small purple diamond above a large green circle",
                  "a large orange square", "a small red star right of a large blue triangle")
PROFILE_STEPS = {"smoke": 20, "laptop": 3000, "gpu": 50_000}  # optimizer steps of a run in each profile


@dataclass(frozen=True)
class DiffusionTarget:
    """A diffusion model of a lab preset: ``LatentDiffusion`` + ``DiffusionTask`` on ``dataset``."""

    name: str
    description: str
    dataset: str                     # a name in ldm_lab.data.DATASETS: "fashion_mnist", "emoji" or "shapes"
    model: LatentDiffusionConfig
    task: DiffusionTask              # also the default sampler, steps and guidance of ``ldm-lab sample``/``eval``
    train: TrainConfig               # defaults; the command line overrides steps, batch size, device, time limit
    steps: dict[str, int] = field(default_factory=lambda: dict(PROFILE_STEPS))
    first_stage: str | None = None   # latent models: the AutoencoderTarget whose trained run is the frozen E/D

    def __post_init__(self) -> None:
        latent = get_preset(self.model.preset).autoencoder is not None
        if latent != (self.first_stage is not None):
            raise ValueError(f"target {self.name}: a latent preset names the autoencoder target of its first stage "
                             "(first_stage=...), a pixel-space preset names none.")

    @property
    def resolution(self) -> tuple[int, int]:
        return get_preset(self.model.preset).resolution

    @property
    def needs_first_stage(self) -> bool:
        """A latent model trains on a first stage trained before (the ``first_stage`` target's run)."""
        return self.first_stage is not None

    def build_model(self) -> LatentDiffusion:
        return LatentDiffusion(self.model)

    def build_task(self) -> DiffusionTask:
        return self.task


@dataclass(frozen=True)
class AutoencoderTarget:
    """A first stage: ``AutoencoderGAN`` + ``AutoencoderTask`` on ``dataset``."""

    name: str
    description: str
    dataset: str
    autoencoder: AutoencoderConfig   # the architecture (the first stage of a latent preset)
    loss: AutoencoderLossConfig
    train: TrainConfig
    steps: dict[str, int] = field(default_factory=lambda: dict(PROFILE_STEPS))
    resolution: tuple[int, int] = (64, 64)
    preview_size: int = 8            # validation images shown (above their reconstructions) in sample grids

    def build_model(self) -> AutoencoderGAN:
        return AutoencoderGAN(self.autoencoder, self.loss)

    def build_task(self) -> AutoencoderTask:
        val = build_dataset(self.dataset, "val", self.resolution)
        return AutoencoderTask(torch.stack([val[i]["image"] for i in range(self.preview_size)]))


TrainTarget = DiffusionTarget | AutoencoderTarget

_PIXEL_TRAIN = TrainConfig(batch_size=64, lr=2e-4, warmup_steps=200, ema_decay=0.999, checkpoint_every=500,
                           sample_every=500)
_LATENT_TRAIN = replace(_PIXEL_TRAIN, batch_size=32)

TARGETS: dict[str, TrainTarget] = {t.name: t for t in [
    DiffusionTarget("lab-pixel", "unconditional DDPM on 28x28 Fashion-MNIST pixels (preset lab-pixel)",
                    "fashion_mnist", LatentDiffusionConfig("lab-pixel"), DiffusionTask(), _PIXEL_TRAIN),
    DiffusionTarget("lab-class", "class-conditional Fashion-MNIST pixels with a null class for CFG (lab-class)",
                    "fashion_mnist", LatentDiffusionConfig("lab-class"),
                    DiffusionTask(sample_labels=tuple(i % 10 for i in range(16)), guidance_scale=3.0), _PIXEL_TRAIN),
    DiffusionTarget("lab-emoji", "text-to-image latent diffusion on 64x64 emoji, on a lab-autoencoder first "
                    "stage (lab-emoji)", "emoji", LatentDiffusionConfig("lab-emoji"),
                    DiffusionTask(sample_prompts=EMOJI_PROMPTS, guidance_scale=5.0), _LATENT_TRAIN,
                    first_stage="lab-autoencoder"),
    DiffusionTarget("lab-shapes", "text-to-image latent diffusion on 64x64 Shapes scenes and their captions, with "
                    "lab-emoji's networks and first stage", "shapes", LatentDiffusionConfig("lab-emoji"),
                    DiffusionTask(sample_prompts=SHAPES_PROMPTS, guidance_scale=5.0), _LATENT_TRAIN,
                    first_stage="lab-autoencoder"),
    AutoencoderTarget("lab-autoencoder", "the KL-f4 first stage of lab-emoji / lab-sdxl on 64x64 emoji: "
                      "L1 + lab-clip perceptual + PatchGAN + KL (LDM App. G)", "emoji", LAB_AUTOENCODER,
                      AutoencoderLossConfig(), TrainConfig(batch_size=16, lr=1e-4, warmup_steps=100,
                                                           checkpoint_every=500, sample_every=500)),
]}

def get_target(name: str) -> TrainTarget:
    """The training target ``name``; an unknown name lists the valid ones."""
    if name in TARGETS:
        return TARGETS[name]
    close = difflib.get_close_matches(name, TARGETS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listing = "; ".join(f"{t.name}: {t.description}" for t in TARGETS.values())
    raise ValueError(f"unknown training target {name!r}.{hint} Trainable targets are: {listing}.")
