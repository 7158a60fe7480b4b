"""What ``ldm-lab train NAME`` can train: every family's models and the first stages they use.

A target names a model, its task, its dataset and its training defaults (``base``: the kinds of target). Each
model family has one module here holding its targets (its presets and conditioners are in the module of the same
name in ``ldm_lab.presets``): ``fashion_mnist``, ``emoji``, ``compression``, ``shapes`` (with SDXL's
ablations) and ``sd_versions``; the recipes several of them share are in ``recipes``.

    target = get_target("lab-class")
    model, task = target.build_model(), target.build_task()
"""

from __future__ import annotations

from ldm_lab.names import unknown_name_error
from ldm_lab.tasks.targets import compression, emoji, fashion_mnist, sd_versions, shapes
from ldm_lab.tasks.targets.base import (PROFILE_STEPS, AutoencoderTarget, DiffusionTarget, TrainTarget,
                                        TrainTargetBase, cycling_labels)

FAMILIES = (fashion_mnist, emoji, compression, shapes, sd_versions)
TARGETS: dict[str, TrainTarget] = {target.name: target for family in FAMILIES for target in family.TARGETS}


def get_target(name: str) -> TrainTarget:
    """The training target ``name``; an unknown name lists the valid ones."""
    if name in TARGETS:
        return TARGETS[name]
    listing = "; ".join(f"{t.name}: {t.description}" for t in TARGETS.values())
    raise unknown_name_error("training target", name, TARGETS, listing=listing)


__all__ = ["FAMILIES", "PROFILE_STEPS", "TARGETS", "AutoencoderTarget", "DiffusionTarget", "TrainTarget",
           "TrainTargetBase", "cycling_labels", "get_target"]
