"""What every family's conditioners are made of: a prompt per text tower, SDXL's size/crop and aesthetic-score
conditions (SDXL §2.2, §2.5), and, for a preset whose family names no conditioner, the conditions its networks imply.

A family module maps preset names to a ``ConditionerOf`` (``CONDITIONERS``); ``ldm_lab.presets.conditioner_config``
looks a preset up there and falls back on ``from_networks``.
"""

from __future__ import annotations

from collections.abc import Callable

from ldm_lab.conditioning.base import Null, Output
from ldm_lab.conditioning.class_embedder import ClassEmbedderConfig
from ldm_lab.conditioning.conditioner import ConditionerConfig, ConditionSpec
from ldm_lab.conditioning.micro import FourierEmbedderConfig
from ldm_lab.conditioning.text import TextEmbedderConfig
from ldm_lab.presets.base import Preset

ConditionerOf = Callable[[Preset, float, bool], ConditionerConfig]  # (preset, dropout, train text) -> its conditions

AESTHETIC_SCORE = 6.0           # the refiner's aesthetic score at sampling (SGM's inference api.py refiner() and
NEGATIVE_AESTHETIC_SCORE = 2.5  # scripts/demo/sampling.py apply_refiner; diffusers' SDXL img2img defaults) and the
                                # one its unconditional branch is guided away from


def text_conditions(preset: Preset, dropout: float, trainable: bool, null: Null = Null.NULL_INPUT
                    ) -> tuple[ConditionSpec, ...]:
    """One prompt condition per text tower of the preset (SDXL: CLIP-L, then bigG), all reading ``caption``.
    ``null`` is what both a dropped prompt (training) and the unconditional branch (sampling) become: the empty
    prompt, or zeros. Towers with pretrained weights (``preset.text_weights``) stay frozen."""
    trainable = trainable and preset.text_weights is None
    return tuple(ConditionSpec(name, ("caption",), TextEmbedderConfig(config, trainable,
                                                                      pretrained=preset.text_weights),
                               dropout, null)
                 for name, config in preset.text_encoders.items())


def size_conditions(preset: Preset, refiner: bool = False) -> tuple[ConditionSpec, ...]:
    """SDXL §2.2: original size and crop top-left, then target size (base) or aesthetic score (refiner). Never
    dropped in training. Sizes and crop are kept as they are in the unconditional branch, as SGM's sampling does
    (its batch_uc copies them); the refiner's aesthetic score is 6.0 there and 2.5 in the unconditional branch."""
    size = tuple(float(s) for s in preset.resolution)
    score = FourierEmbedderConfig(1, default=(AESTHETIC_SCORE,), unconditional=(NEGATIVE_AESTHETIC_SCORE,))
    last = (ConditionSpec("aesthetic_score", ("aesthetic_score",), score, dropped=Null.KEEP,
                          unconditional=Null.NULL_INPUT) if refiner else
            ConditionSpec("target_size", ("target_size",), FourierEmbedderConfig(2, default=size), dropped=Null.KEEP))
    return (ConditionSpec("original_size", ("original_size",), FourierEmbedderConfig(2, default=size),
                          dropped=Null.KEEP),
            ConditionSpec("crop_top_left", ("crop_top_left",), FourierEmbedderConfig(2, default=(0.0, 0.0)),
                          dropped=Null.KEEP),
            last)


def from_networks(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """What the networks say: a prompt per text tower (SD 1.x / 2.x), class labels for a U-Net with a class
    table (its last row is the null class), nothing for an unconditional model."""
    if preset.unet.y_dim is not None:
        raise ValueError(f"preset {preset.name!r} has a vector condition (y_dim={preset.unet.y_dim}) but no "
                         "conditioner says what it is made of; add one to its family's CONDITIONERS (ldm_lab.presets).")
    if preset.unet.num_classes is not None:
        labels = ClassEmbedderConfig(preset.unet.num_classes - 1, output=Output.LABEL)
        return ConditionerConfig((ConditionSpec("class", ("label",), labels, dropout),),
                                 f"a class label (0..{preset.unet.num_classes - 2})")
    conditions = text_conditions(preset, dropout, trainable)
    return ConditionerConfig(conditions, "a prompt" if conditions else "nothing (unconditional)")
