"""The conditioner of each preset: which conditions a model takes, read from its networks, and for the models
whose conditions the networks cannot tell (SDXL's size and crop, class tokens, layouts, segmentation maps)
written out by name.

    conditioner_config(get_preset("sdxl-base")).widths()  # {CONTEXT: 2048, VECTOR: 2816}
"""

from __future__ import annotations

from collections.abc import Callable

from ldm_lab.conditioning.base import Null, Output
from ldm_lab.conditioning.class_embedder import ClassEmbedderConfig
from ldm_lab.conditioning.conditioner import ConditionerConfig, ConditionSpec
from ldm_lab.conditioning.layout import LayoutEmbedderConfig
from ldm_lab.conditioning.micro import FourierEmbedderConfig
from ldm_lab.conditioning.segmentation import SegmentationEmbedderConfig
from ldm_lab.conditioning.text import TextEmbedderConfig
from ldm_lab.data import DATASETS
from ldm_lab.presets import SHAPES_MAP_CLASSES, Preset

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


def _sdxl(preset: Preset, dropout: float, trainable: bool, text_null: Null = Null.ZEROS) -> ConditionerConfig:
    """SDXL base (and Turbo): both towers' prompts, the pooled prompt and size/crop. Its sampling zeroes the text
    embeddings in the unconditional branch (SGM's force_uc_zero_embeddings=["txt"]), so training drops them to
    zeros too, CLIP-L's context, bigG's context and bigG's pooled vector each drawn separately (SGM's ucg)."""
    conditions = text_conditions(preset, dropout, trainable, text_null) + size_conditions(preset)
    return ConditionerConfig(conditions, "prompt, pooled prompt and SDXL size/crop micro-conditioning")


def _lab_sdxl(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """The lab replica trains with empty-prompt dropout, so it samples with the empty prompt it learned."""
    return _sdxl(preset, dropout, trainable, text_null=Null.NULL_INPUT)


def _sdxl_refiner(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """SDXL refiner: bigG's prompt and pooled prompt, size/crop and the aesthetic score (SDXL §2.5). SGM samples it
    as a "legacy" model: no force_uc_zero_embeddings, so its unconditional branch encodes the negative (by default
    empty) prompt, with aesthetic score 2.5."""
    return ConditionerConfig(text_conditions(preset, dropout, trainable) + size_conditions(preset, refiner=True),
                             "prompt, pooled prompt, size/crop, aesthetic score")


def _class_token(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    classes = DATASETS["fashion_mnist"].num_classes
    embedder = ClassEmbedderConfig(classes, width=preset.unet.context_dim, output=Output.CONTEXT)
    return ConditionerConfig((ConditionSpec("class", ("label",), embedder, dropout),),
                             f"a class label (0..{classes - 1})")


def _layout(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """Box tokens for cross-attention, and the boxes' per-class coverage maps at the latent's size, concatenated."""
    f = preset.autoencoder.downsampling_factor
    embedder = LayoutEmbedderConfig(DATASETS["shapes"].num_classes, width=preset.unet.context_dim,
                                    raster_cells=(preset.resolution[0] // f, preset.resolution[1] // f))
    return ConditionerConfig((ConditionSpec("layout", ("boxes", "box_labels"), embedder, dropout),),
                             "boxes and their Shapes kinds: tokens, and coverage maps concatenated")


def _segmentation(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    embedder = SegmentationEmbedderConfig(SHAPES_MAP_CLASSES, preset.autoencoder.downsampling_factor)
    return ConditionerConfig((ConditionSpec("segmentation", ("segmentation",), embedder, dropout, Null.ZEROS),),
                             "a Shapes segmentation map")


def from_networks(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """What the networks say: a prompt per text tower (SD 1.x / 2.x), class labels for a U-Net with a class
    table (its last row is the null class), nothing for an unconditional model."""
    if preset.unet.y_dim is not None:
        raise ValueError(f"preset {preset.name!r} has a vector condition (y_dim={preset.unet.y_dim}) but no "
                         "conditioner says what it is made of; add one to ldm_lab.conditioning.presets.CONDITIONERS.")
    if preset.unet.num_classes is not None:
        labels = ClassEmbedderConfig(preset.unet.num_classes - 1, output=Output.LABEL)
        return ConditionerConfig((ConditionSpec("class", ("label",), labels, dropout),),
                                 f"a class label (0..{preset.unet.num_classes - 2})")
    conditions = text_conditions(preset, dropout, trainable)
    return ConditionerConfig(conditions, "a prompt" if conditions else "nothing (unconditional)")


CONDITIONERS: dict[str, Callable[[Preset, float, bool], ConditionerConfig]] = {
    "sdxl-base": _sdxl, "sdxl-turbo": _sdxl, "lab-sdxl": _lab_sdxl, "sdxl-refiner": _sdxl_refiner,
    "lab-fmnist": _class_token, "lab-layout": _layout, "lab-seg": _segmentation,
}


def conditioner_config(preset: Preset, dropout: float = 0.1, train_text: bool = True) -> ConditionerConfig:
    """The conditions of ``preset``, each dropped with probability ``dropout`` in training (size and crop never);
    ``train_text``: the text towers train with the U-Net (LDM §4.3) or stay frozen (SD)."""
    if preset.unet is None:
        raise ValueError(f"preset {preset.name!r} has no U-Net, so nothing to condition: it is a first stage alone.")
    return CONDITIONERS.get(preset.name, from_networks)(preset, dropout, train_text)
