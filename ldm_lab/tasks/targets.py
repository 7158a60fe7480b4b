"""What ``ldm-lab train NAME`` can train: the lab diffusion presets and the first stage they use.

A target names a model, its task, its dataset and its training defaults (kept here, keyed by name, so the
presets stay pure architecture). ``steps`` says how long a run is in each profile.

    target = get_target("lab-class")
    model, task = target.build_model(), target.build_task()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ldm_lab.data import DATASETS, build_dataset, collate
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.names import unknown_name_error
from ldm_lab.nn.autoencoder import AutoencoderConfig, Regularizer
from ldm_lab.presets import (
    COMPRESSION_FACTORS,
    LAB_AUTOENCODER,
    LAB_FMNIST_AUTOENCODER,
    LAB_SHAPES_AUTOENCODER,
    get_preset,
    lab_first_stage,
)
from ldm_lab.tasks.autoencoder import (
    AutoencoderGAN,
    AutoencoderLossConfig,
    AutoencoderTask,
    ldm_first_stage_train_config,
)
from ldm_lab.tasks.diffusion import DiffusionTask
from ldm_lab.training import SamplingTask, TrainConfig

EMOJI_PROMPTS = ("grinning face", "red apple", "cat face", "rocket", "sun", "red heart", "pizza", "dog face",
                 "tree", "car", "ghost", "star", "fire", "banana", "house", "flag of france")
SHAPES_PROMPTS = ("a large red circle", "a small blue square", "a large green triangle", "a medium yellow star",
                  "a large red circle left of a small blue square", "a small purple diamond above a large green circle",
                  "a large orange square", "a small red star right of a large blue triangle")
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

    def build_model(self) -> AutoencoderGAN:
        return AutoencoderGAN(self.autoencoder, self.loss)

    def build_task(self) -> AutoencoderTask:
        val = build_dataset(self.dataset, "val", self.resolution)
        return AutoencoderTask(torch.stack([val[i]["image"] for i in range(self.preview_size)]), crop=self.crop)


TrainTarget = DiffusionTarget | AutoencoderTarget

# The CPU recipe of lab-emoji (measured on a 2-core CPU; see the time-to-quality benchmark, ldm_lab.quality):
# * first stage: LDM's objective and optimiser (two Adams at betas (0.5, 0.9), no clipping), on 32x32 windows
#   (a quarter of the cost of a whole image), a higher lr than LDM's 4.5e-6 x batch (we have minutes, not days),
#   and the GAN on after 1,500 batches, once reconstructions are no longer blurry;
# * diffusion: latents and prompts encoded once (cache_latents; the frozen text tower's memo), a 16 M U-Net,
#   batch 16 for more updates in the same time, min-SNR-5 weighting (Hang et al. 2023: faster convergence), and an
#   EMA short enough (0.995) for a run of a few thousand steps.
EMOJI_FIRST_STAGE_LOSS = AutoencoderLossConfig(perceptual_weight=0.0, disc_start=1500)
EMOJI_FIRST_STAGE_TRAIN = ldm_first_stage_train_config(16, 4e-4, checkpoint_every=500, sample_every=500,
                                                       keep_checkpoints=2)
EMOJI_FIRST_STAGE_STEPS = {"smoke": 20, "laptop": 4000, "gpu": 50_000}
EMOJI_STEPS = {"smoke": 20, "laptop": 8000, "gpu": 100_000}

_PIXEL_TRAIN = TrainConfig(batch_size=64, lr=2e-4, warmup_steps=200, ema_decay=0.999, checkpoint_every=500,
                           sample_every=500)
_LATENT_TRAIN = replace(_PIXEL_TRAIN, batch_size=32)
EMOJI_TRAIN = replace(_PIXEL_TRAIN, batch_size=16, lr=2e-4, warmup_steps=200, ema_decay=0.995,
                      checkpoint_every=250, sample_every=1000)

TARGETS: dict[str, TrainTarget] = {t.name: t for t in [
    DiffusionTarget("lab-pixel", "unconditional DDPM on 28x28 Fashion-MNIST pixels (preset lab-pixel)",
                    "fashion_mnist", LatentDiffusionConfig("lab-pixel"), DiffusionTask(), _PIXEL_TRAIN),
    DiffusionTarget("lab-class", "class-conditional Fashion-MNIST pixels with a null class for CFG (lab-class)",
                    "fashion_mnist", LatentDiffusionConfig("lab-class"),
                    DiffusionTask(sample_labels=cycling_labels("fashion_mnist"), guidance_scale=3.0), _PIXEL_TRAIN),
    DiffusionTarget("lab-emoji", "text-to-image latent diffusion on 64x64 emoji, on a lab-autoencoder first "
                    "stage, with the CPU recipe (cached latents and prompts, a 16 M U-Net, min-SNR)", "emoji",
                    LatentDiffusionConfig("lab-emoji", snr_gamma=5.0),
                    DiffusionTask(sample_prompts=EMOJI_PROMPTS, guidance_scale=3.0, alias_rate=0.5), EMOJI_TRAIN,
                    steps=dict(EMOJI_STEPS), first_stage="lab-autoencoder", cache_latents=True),
    DiffusionTarget("lab-shapes", "text-to-image latent diffusion on 64x64 Shapes scenes and their captions, with "
                    "lab-emoji's networks and first stage", "shapes", LatentDiffusionConfig("lab-emoji"),
                    DiffusionTask(sample_prompts=SHAPES_PROMPTS, guidance_scale=5.0), _LATENT_TRAIN,
                    first_stage="lab-autoencoder", cache_latents=True),
    AutoencoderTarget("lab-autoencoder", "the KL-f4 first stage of lab-emoji on 64x64 emoji: L1 + PatchGAN + KL "
                      "(LDM App. G) with LDM's optimiser, on random 32x32 windows", "emoji", LAB_AUTOENCODER,
                      EMOJI_FIRST_STAGE_LOSS, EMOJI_FIRST_STAGE_TRAIN, steps=dict(EMOJI_FIRST_STAGE_STEPS),
                      crop=32),
]}

# --- the compression ablation (LDM §4.1, Tab. 8, Fig. 6): first stages per regulariser and f, and LDM-f --------
# Every lab first stage of the ablation trains with LDM's objective and optimiser (its GAN weight per regulariser).
# LDM-{1..32} share one setup (steps, batch, schedule, sampler), so only f differs, and keep all their checkpoints:
# Fig. 6 measures FID against training steps. They are class-conditional; their sample grids and FIDs draw without
# guidance, as Fig. 6.

ABLATION_FIRST_STAGE_TRAIN = ldm_first_stage_train_config(16, 1e-4, checkpoint_every=500, sample_every=500)
ABLATION_STEPS = {"smoke": 20, "laptop": 3000, "gpu": 6000}  # optimizer steps of every LDM-f in each profile
ABLATION_TRAIN = replace(_LATENT_TRAIN, checkpoint_every=500, keep_checkpoints=100)


def first_stage_target(regularizer: Regularizer, f: int) -> str:
    """The target that trains the lab first stage ``lab_first_stage(regularizer, f)``."""
    return f"lab-{regularizer.value}-f{f}"


def ablation_target(f: int) -> str:
    """The target that trains LDM-``f``."""
    return f"lab-ldm-{f}"


def _lab_first_stage(regularizer: Regularizer, f: int) -> AutoencoderTarget:
    return AutoencoderTarget(first_stage_target(regularizer, f), f"lab first stage {regularizer.name}-f{f} on 64x64 emoji, "
                "(LDM Tab. 8 in miniature)", "emoji", lab_first_stage(regularizer, f),
                AutoencoderLossConfig.for_regularizer(regularizer), ABLATION_FIRST_STAGE_TRAIN)


def _ablation_ldm(f: int) -> DiffusionTarget:
    where = "in pixel space" if f == 1 else f"on the lab-vq-f{f} first stage"
    return DiffusionTarget(ablation_target(f), f"LDM-{f} of the compression ablation: class-conditional 64x64 emoji "
                           f"{where} (LDM §4.1, Fig. 6)", "emoji", LatentDiffusionConfig(ablation_target(f)),
                           DiffusionTask(sample_labels=cycling_labels("emoji")),
                           ABLATION_TRAIN, steps=dict(ABLATION_STEPS),
                           first_stage=first_stage_target(Regularizer.VQ, f) if f > 1 else None)


TARGETS.update({t.name: t for t in [
    *(_lab_first_stage(regularizer, f) for regularizer in Regularizer for f in COMPRESSION_FACTORS),
    *(_ablation_ldm(f) for f in COMPRESSION_FACTORS),
]})

# --- the conditioning models (notebook 04) and the Fashion-MNIST first stage -----------------------------------

# The conditioning models train with lab-emoji's recipe (cached latents, min-SNR-5, batch 16, a short EMA) for
# the minutes a 2-core CPU can give each of them.
_CONDITIONED_TRAIN = EMOJI_TRAIN
SHAPES_STEPS = {"smoke": 20, "laptop": 5000, "gpu": 50_000}
# The Shapes models decode with a first stage trained on Shapes, with lab-autoencoder's recipe. It trains on
# shapes_multiscale, lab-sdxl's data, which holds sharp scenes and blurred upscaled small originals alike: trained
# on sharp scenes only, its decoder drew every latent equally sharp (Laplacian energy of reconstructions 1.3-1.4
# x 1e-3 for originals of 16 to 128 px, where the real images range 0.12 to 1.4), which erased the very signal
# that size conditioning needs.
SHAPES_FIRST_STAGE = "lab-shapes-autoencoder"

TARGETS.update({t.name: t for t in [
    AutoencoderTarget(SHAPES_FIRST_STAGE, "the KL-f4 first stage of the Shapes models (lab-layout, lab-seg, lab-sdxl) "
                      "on 64x64 Shapes scenes from 0.25x-2x originals: lab-autoencoder's design and recipe", "shapes_multiscale",
                      LAB_SHAPES_AUTOENCODER,
                      EMOJI_FIRST_STAGE_LOSS, EMOJI_FIRST_STAGE_TRAIN, steps=dict(EMOJI_FIRST_STAGE_STEPS), crop=32),
    AutoencoderTarget("lab-fmnist-autoencoder", "the 1-channel KL-f4 first stage of lab-fmnist on 32x32 "
                      "Fashion-MNIST: lab-autoencoder's objective and optimiser (no perceptual term: lab-clip sees "
                      "RGB only)",
                      "fashion_mnist", LAB_FMNIST_AUTOENCODER, EMOJI_FIRST_STAGE_LOSS,
                      ldm_first_stage_train_config(32, 4e-4, checkpoint_every=500, sample_every=500,
                                                   keep_checkpoints=2),
                      steps=dict(EMOJI_FIRST_STAGE_STEPS), resolution=(32, 32)),
    DiffusionTarget("lab-fmnist", "class-conditional latent diffusion on 32x32 Fashion-MNIST: the class as one "
                    "learned cross-attention token (LDM's cin models), null class for CFG", "fashion_mnist",
                    LatentDiffusionConfig("lab-fmnist", snr_gamma=5.0),
                    DiffusionTask(sample_labels=cycling_labels("fashion_mnist"), guidance_scale=3.0),
                    _CONDITIONED_TRAIN, first_stage="lab-fmnist-autoencoder", cache_latents=True),
    DiffusionTarget("lab-layout", "layout-to-image latent diffusion on 64x64 Shapes: boxes as (l, b, c) tokens "
                    "through a transformer encoder, cross-attended (LDM Tab. 17)", "shapes",
                    LatentDiffusionConfig("lab-layout", snr_gamma=5.0), DiffusionTask(guidance_scale=3.0),
                    _CONDITIONED_TRAIN, steps=dict(SHAPES_STEPS), first_stage=SHAPES_FIRST_STAGE,
                    sample_from_validation=True, cache_latents=True),
    DiffusionTarget("lab-seg", "segmentation-to-image latent diffusion on 64x64 Shapes: the one-hot class map "
                    "concatenated to the latent (LDM §4.3.2)", "shapes",
                    LatentDiffusionConfig("lab-seg", snr_gamma=5.0),
                    DiffusionTask(guidance_scale=3.0), _CONDITIONED_TRAIN, steps=dict(SHAPES_STEPS),
                    first_stage=SHAPES_FIRST_STAGE, sample_from_validation=True, cache_latents=True),
    DiffusionTarget("lab-sdxl", "tiny SDXL on 64x64 Shapes resized from 0.25x-2x originals and cropped: prompt, "
                    "pooled prompt and size/crop micro-conditioning (SDXL §2.2)", "shapes_multiscale",
                    LatentDiffusionConfig("lab-sdxl", snr_gamma=5.0),
                    DiffusionTask(sample_prompts=SHAPES_PROMPTS, guidance_scale=5.0), _CONDITIONED_TRAIN,
                    steps=dict(SHAPES_STEPS), first_stage=SHAPES_FIRST_STAGE, cache_latents=True),
]})


def get_target(name: str) -> TrainTarget:
    """The training target ``name``; an unknown name lists the valid ones."""
    if name in TARGETS:
        return TARGETS[name]
    listing = "; ".join(f"{t.name}: {t.description}" for t in TARGETS.values())
    raise unknown_name_error("training target", name, TARGETS, listing=listing)
