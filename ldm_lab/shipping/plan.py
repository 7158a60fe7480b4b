"""What a ship trains, in which order, and for how long.

First stages train first (phase 0); the diffusion models (phase 1) train on the first stages just shipped; a model
that learns from another's trained weights (a distilled one from its teacher, a fine-tuned one from what it starts
from) trains in the phase after them (those sources ship only when asked for by name). A
pixel-space diffusion model needs no first stage but still trains in phase 1, so that all models of an ablation
(LDM-1 ... LDM-32) get the same wall-clock time. Each phase gets a share of the time left when it starts; its
runs train at most ``jobs`` at a time, each under the trainer's time limit (it stops and checkpoints cleanly).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from ldm_lab.profiles import check_profile
from ldm_lab.tasks.targets import TARGETS, AutoencoderTarget, TrainTarget, get_target


@dataclass(frozen=True)
class ShipConfig:
    """How ``ldm-lab ship`` trains and exports."""

    device: str | None = None         # training device of every run (None: cuda, then mps, then cpu)
    profile: str = "laptop"           # sets each run's steps (smoke 20, laptop 3000, gpu 50000)
    steps: int | None = None          # optimizer steps of every run instead of the profile's (the learning-rate
                                      # schedule spans them; the time budget may stop a run sooner)
    jobs: int = 2                     # training processes at a time
    budget_s: float = 3600.0          # wall-clock seconds of the whole ship: materialise, train, export
    first_stage_share: float = 0.4    # share of the training time phase 0 (first stages) gets when phase 1 follows
    startup_s: float = 30.0           # per run, outside the trainer's time limit: start-up, data, last checkpoint
    export_s: float = 3.0             # per run: loading it back, held-out metrics, writing the fp16 file
    materialise: bool = True          # build the training data into tensors in the data cache first
    scenes: int = 20_000              # ... items of a procedural dataset (Shapes scenes) to build; others: all
    checkpoints: Path | None = None   # where the shipped files and manifest.json go (None: data/checkpoints)
    runs: Path | None = None          # run directories, logs and the summary (None: build/runs/ship/<time>)

    def __post_init__(self) -> None:
        check_profile(self.profile)
        if self.jobs < 1 or self.budget_s <= 0:
            raise ValueError(f"--jobs must be at least 1 and --budget-s positive; got {self.jobs} and "
                             f"{self.budget_s}.")
        if not 0 < self.first_stage_share < 1:
            raise ValueError(f"first_stage_share is a fraction in (0, 1), got {self.first_stage_share}.")

    @property
    def threads_per_job(self) -> int:
        """CPU threads each run may use: the cores shared among the concurrent runs."""
        return max(1, (os.cpu_count() or 1) // self.jobs)


# Trainable, but not shipped by `ldm-lab ship --all` (the repository's checkpoints must stay small):
NOT_SHIPPED = frozenset({
    "lab-emoji-large",  # lab-emoji's teacher (31 MiB in fp16): a ship of lab-emoji trains it, distils, drops it
    "lab-emoji-distilled",  # the distilled student lab-emoji is fine-tuned from (lab-emoji ships in its place)
    "lab-autoencoder-symmetric",  # its encoder ships inside lab-autoencoder, behind a wider decoder
    "lab-shapes",  # text-to-image on Shapes: lab-sdxl and lab-layout cover that data in the notebooks
})


def shipped_targets() -> list[str]:
    """What ``ldm-lab ship --all`` trains: every target but those in ``NOT_SHIPPED``."""
    return [name for name in TARGETS if name not in NOT_SHIPPED]


def phase_of(target: TrainTarget) -> int:
    """0 for a first stage trained from scratch, 1 for a diffusion model trained from scratch, and for a target that
    needs other targets trained first (its first stage, its teacher, the model it starts from) one more than the
    latest of theirs."""
    needs = [*sources_of(target.name), *([target.first_stage] if target.first_stage else [])]
    own = 0 if isinstance(target, AutoencoderTarget) else 1
    return max(own, 1 + max((phase_of(get_target(name)) for name in needs), default=-1))


def first_stage_of(name: str) -> str | None:
    """The first-stage target a target trains on (None: pixel space, or itself a first stage)."""
    return get_target(name).first_stage


def teacher_of(name: str) -> str | None:
    """The target a distilled target learns from (None: it learns from its data alone)."""
    return get_target(name).teacher


def starts_from_of(name: str) -> str | None:
    """The target whose trained weights a fine-tuned target starts from (None: it starts from fresh weights)."""
    return get_target(name).starts_from


def sources_of(name: str) -> tuple[str, ...]:
    """The targets whose trained models ``name`` needs before it can train (teacher, starting weights)."""
    return get_target(name).sources


def with_dependencies(names: Sequence[str], shipped: Collection[str]) -> list[str]:
    """``names`` (checked) plus what they need that is neither named nor shipped already: the sources of those
    that learn from other targets (their teachers, the models they are fine-tuned from; theirs in turn), and the
    first stages of all of them."""
    wanted: list[str] = []

    def add(name: str) -> None:
        for source in sources_of(name):
            if source not in shipped and source not in wanted:
                add(source)
        stage = first_stage_of(name)
        if stage and stage not in shipped and stage not in wanted:
            add(stage)
        if name not in wanted:
            wanted.append(name)

    for name in names:
        add(name)
    return wanted


def plan_phases(names: Sequence[str]) -> list[list[str]]:
    """The targets grouped into phases, in order (empty phases dropped)."""
    phases: dict[int, list[str]] = {}
    for name in names:
        phases.setdefault(phase_of(get_target(name)), []).append(name)
    return [phases[index] for index in sorted(phases)]


def phase_budget_s(remaining_s: float, phase: int, phases: Sequence[Sequence[str]], share: float) -> float:
    """The seconds of ``remaining_s`` that phase ``phase`` gets: its weight over those of the phases left
    (phase 0 weighs ``share``, each later phase ``1 - share``)."""
    weights = [share if phase_of(get_target(p[0])) == 0 else 1 - share for p in phases[phase:]]
    return remaining_s * weights[0] / sum(weights)


def run_time_limit_s(phase_budget: float, num_runs: int, config: ShipConfig) -> float:
    """The trainer's time limit for each run of a phase: the phase's seconds, less every run's start-up and
    export, over the waves of ``jobs`` concurrent runs (at least 5 s, so that every run trains a little)."""
    waves = math.ceil(num_runs / config.jobs)
    exports = num_runs * config.export_s
    return max(5.0, (phase_budget - exports) / waves - config.startup_s)
