"""The two arms of the time-to-quality benchmark, each trained for a wall-clock budget and asked for images.

* ``ours``: ``lab-autoencoder`` for a share of the budget, then ``lab-emoji`` for the rest (the CPU recipe of
  ``ldm_lab.tasks.targets.recipes``: LDM's first-stage objective on 32x32 windows, latents and prompts encoded once,
  a 16 M U-Net, min-SNR, EMA), both through ``ldm-lab train``'s own code (``train_target``);
* ``diffusers``: ``AutoencoderKL`` + ``UNet2DConditionModel`` + a ``CLIPTextModel`` from scratch, with
  diffusers' example recipe, untuned (``ldm_lab.quality.diffusers_arm``).

Each arm writes into its own folder and records what it did in ``arm_record.json`` (steps, seconds, images/s);
a folder that already holds a finished record is reused, so an interrupted benchmark resumes where it stopped.
Run one arm in a process of its own: ``ldm-lab quality-arm ours --minutes 60 --out DIR``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ldm_lab.data.materialise import training_dataset
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.models import LatentDiffusion
from ldm_lab.names import unknown_name_error
from ldm_lab.tasks.diffusion import generate
from ldm_lab.tasks.runs import load_run, run_config, train_target
from ldm_lab.tasks.targets import get_target
from ldm_lab.training import read_metrics

ARMS = ("ours", "diffusers")
RECORD_FILE = "arm_record.json"
OUR_FIRST_STAGE, OUR_MODEL = "lab-autoencoder", "lab-emoji-large"
IMAGES_PER_SECOND_GUESS = 22.0  # lab-emoji's training rate on one thread of the 2-core CPU (sets its step count)
LATENT_CACHE_ALLOWANCE_S = 180.0  # budget kept back for encoding the training set once (measured: 1-3 min on one
                                  # thread); what it really took is recorded as diffusion_setup


@dataclass
class ArmRecord:
    """What one arm's training did, per phase (``first_stage``, ``diffusion``)."""

    arm: str
    minutes: float                                              # the budget it was given
    threads: int                                                # torch threads it trained on
    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)     # wall clock of each phase's training
    images_per_second: dict[str, float] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        (folder / RECORD_FILE).write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ArmRecord | None:
        path = folder / RECORD_FILE
        return cls(**json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def check_arm(arm: str) -> str:
    if arm not in ARMS:
        raise unknown_name_error("arm", arm, ARMS)
    return arm


def _phase_totals(run_dir: Path, batch_size: int) -> tuple[int, float, float]:
    """Steps, training seconds and images/s of a finished ``ldm-lab train`` run, from its metrics log."""
    last = read_metrics(run_dir)[-1]
    return last["step"], last["elapsed_s"], last["step"] * batch_size / last["elapsed_s"]


def train_ours(minutes: float, out: Path, first_stage_share: float = 0.33,
               first_stage: Path | None = None) -> ArmRecord:
    """``lab-autoencoder`` for ``first_stage_share`` of the budget, then ``lab-emoji`` for what is left of it.
    ``first_stage``: a ``lab-autoencoder`` run trained before (its recorded seconds count against the budget)."""
    budget_s, record = 60.0 * minutes, ArmRecord("ours", minutes, torch.get_num_threads())
    stage_dir = first_stage or out / OUR_FIRST_STAGE
    if first_stage is None:
        stage = get_target(OUR_FIRST_STAGE)
        train_target(OUR_FIRST_STAGE, stage_dir, run_config(stage, steps=10**9, time_limit_s=first_stage_share * budget_s),
                     resume=stage_dir.is_dir())
    stage_steps, stage_s, stage_rate = _phase_totals(stage_dir, get_target(OUR_FIRST_STAGE).train.batch_size)
    model = get_target(OUR_MODEL)
    left_s = budget_s - stage_s - LATENT_CACHE_ALLOWANCE_S
    if left_s <= 0:
        raise ValueError(f"the first stage already used {stage_s:.0f} s of the {budget_s:.0f} s budget; give the "
                         "benchmark more minutes or a smaller first_stage_share.")
    # The step count sets the cosine schedule's length: about as many steps as the time allows, so the learning
    # rate has decayed when the time runs out (the trainer stops at the limit either way).
    steps = max(1, int(left_s * IMAGES_PER_SECOND_GUESS / model.train.batch_size))
    start = time.perf_counter()
    result = train_target(OUR_MODEL, out / OUR_MODEL, run_config(model, steps=steps, time_limit_s=left_s),
                          first_stage=stage_dir)
    wall = time.perf_counter() - start
    model_steps, model_s, model_rate = _phase_totals(out / OUR_MODEL, model.train.batch_size)
    record.steps = {"first_stage": stage_steps, "diffusion": model_steps}
    record.seconds = {"first_stage": stage_s, "diffusion": model_s, "diffusion_setup": wall - model_s}
    record.images_per_second = {"first_stage": stage_rate, "diffusion": model_rate}
    record.parameters = {"unet": sum(p.numel() for p in result.model.unet.parameters()),
                         "first_stage": sum(p.numel() for p in result.model.first_stage.parameters())}
    return record


def _diffusers_arm():
    """``ldm_lab.quality.diffusers_arm``, imported where it is used: diffusers is a test-extra dependency."""
    try:
        from ldm_lab.quality import diffusers_arm
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"the diffusers arm of the benchmark needs {error.name}: install the test extra, "
                                  "`pip install -e '.[test]'` (make setup does).") from None
    return diffusers_arm


def train_diffusers(minutes: float, out: Path, vae_share: float = 0.2) -> ArmRecord:
    """diffusers' arm for ``minutes`` (its VAE for ``vae_share`` of them), saved into ``out``."""
    diffusers_arm = _diffusers_arm()
    arm = diffusers_arm.train(training_dataset("emoji", (64, 64)), minutes, vae_share=vae_share, checkpoint_dir=out)
    diffusers_arm.save(arm, out)
    counts = diffusers_arm.parameter_counts(arm)
    rename = {"vae": "first_stage", "unet": "diffusion"}
    return ArmRecord("diffusers", minutes, torch.get_num_threads(),
                     steps={rename[k]: v for k, v in arm.steps.items()},
                     seconds={rename[k]: v for k, v in arm.seconds.items()},
                     images_per_second={rename[k]: v for k, v in arm.images_per_second.items()}, parameters=counts)


def train_arm(arm: str, minutes: float, out: Path, first_stage: Path | None = None) -> ArmRecord:
    """Train ``arm`` into ``out`` (reusing a finished one there) and record it."""
    out.mkdir(parents=True, exist_ok=True)
    done = ArmRecord.load(out)
    if done is not None:
        return done
    record = train_ours(minutes, out, first_stage=first_stage) if check_arm(arm) == "ours" else \
        train_diffusers(minutes, out)
    record.save(out)
    return record


@torch.no_grad()
def arm_images(arm: str, out: Path, captions: Sequence[str], seed: int, guidance_scale: float, steps: int = 20,
               batch_size: int = 64) -> Tensor:
    """One image per caption from a trained arm, in [-1, 1]; noise from one seeded CPU generator."""
    if check_arm(arm) == "diffusers":
        diffusers_arm = _diffusers_arm()
        trained = diffusers_arm.load(out)
        return diffusers_arm.generate(trained, list(captions), seed, steps=steps, guidance_scale=guidance_scale,
                                      batch_size=batch_size)
    return prompt_images(load_run(out / OUR_MODEL).model, captions, seed,
                         SamplingSettings(steps=steps, guidance_scale=guidance_scale), batch_size)


# How the text-to-image bars are stated and every drawing scored unless told otherwise: DPM-Solver++(2M), 20 steps,
# classifier-free guidance 3.
SCORED_SAMPLING = SamplingSettings(steps=20, guidance_scale=3.0)


@torch.no_grad()
def prompt_images(model: LatentDiffusion, captions: Sequence[str], seed: int, settings: SamplingSettings,
                  batch_size: int = 64) -> Tensor:
    """One image per caption from a text-to-image model drawn with ``settings`` (e.g. DPM-Solver++ with CFG, or a
    few-step student's own sampler), noise from one CPU generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([generate(model, prompts=list(captions[i:i + batch_size]), settings=settings,
                               generator=generator)
                      for i in range(0, len(captions), batch_size)])
