"""Text-encoder weights from original SD / SDXL checkpoints onto :class:`~ldm_lab.nn.text.TextEncoder`.

Two layouts occur:

* Hugging Face's ``CLIPTextModel`` (SD 1.x ``cond_stage_model.transformer.*``, SDXL's CLIP-L
  ``conditioner.embedders.0.transformer.*``): separate q/k/v projections, which open_clip fuses into one
  ``in_proj_weight`` ``(3 * width, width)``, and a projection stored as a Linear (transposed);
* open_clip's own (SD 2.x ``cond_stage_model.model.*``, SDXL's bigG ``conditioner.embedders.1.model.*``,
  the refiner's bigG ``conditioner.embedders.0.model.*``): ours, minus the ``tower.`` in front.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
from torch import Tensor

from ldm_lab.convert.files import read_state_dict
from ldm_lab.nn.text import CLIP_L14, CLIP_L14_SDXL, OPENCLIP_BIGG14, OPENCLIP_H14, TextEncoder, TextEncoderConfig

StateDict = Mapping[str, Tensor]
# Entries that belong to neither tower: HF's position_ids buffer, CLIP's temperature, open_clip's mask buffer.
NOT_WEIGHTS = re.compile(r"(position_ids|logit_scale|logit_bias|attn_mask)$")

# (pattern, replacement) on our parameter names, in order -> Hugging Face CLIPTextModel(WithProjection).
HF_CLIP_RENAMES = [
    (r"^tower\.token_embedding\.", "text_model.embeddings.token_embedding."),
    (r"^tower\.positional_embedding$", "text_model.embeddings.position_embedding.weight"),
    (r"^tower\.transformer\.resblocks\.(\d+)\.", r"text_model.encoder.layers.\1."),
    (r"\.ln_1\.", ".layer_norm1."),
    (r"\.ln_2\.", ".layer_norm2."),
    (r"\.attn\.out_proj\.", ".self_attn.out_proj."),
    (r"\.mlp\.c_fc\.", ".mlp.fc1."),
    (r"\.mlp\.c_proj\.", ".mlp.fc2."),
    (r"^tower\.ln_final\.", "text_model.final_layer_norm."),
    (r"^tower\.text_projection$", "text_projection.weight"),
]


class Layout(Enum):
    """How a checkpoint stores a CLIP text tower."""

    HF_CLIP = "hf_clip"  # transformers' CLIPTextModel
    OPEN_CLIP = "open_clip"  # open_clip's CLIP / TextTransformer


def open_clip_key(key: str) -> str:
    """Our parameter name -> open_clip's."""
    return key.removeprefix("tower.")


def hf_clip_key(key: str) -> str:
    """Our parameter name -> Hugging Face's (for the fused attention input, the ``q_proj`` one)."""
    key = re.sub(r"\.attn\.in_proj_(weight|bias)$", r".self_attn.q_proj.\1", key)
    for pattern, replacement in HF_CLIP_RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def their_keys(key: str, layout: Layout, prefix: str = "") -> list[str]:
    """The checkpoint entries that make up our parameter ``key`` (three for a fused q/k/v projection)."""
    if layout is Layout.OPEN_CLIP:
        return [prefix + open_clip_key(key)]
    their_key = prefix + hf_clip_key(key)
    if ".attn.in_proj_" in key:
        return [their_key.replace(".q_proj.", f".{p}_proj.") for p in "qkv"]
    return [their_key]


def their_tensor(theirs: StateDict, key: str, layout: Layout, prefix: str = "") -> Tensor:
    """Our parameter ``key`` built from a checkpoint: Hugging Face's q, k, v concatenated into open_clip's
    fused input projection, its projection transposed (open_clip computes ``x @ P``, a Linear ``x @ W^T``)."""
    tensors = [theirs[k] for k in their_keys(key, layout, prefix)]
    if len(tensors) > 1:
        return torch.cat(tensors)
    if layout is Layout.HF_CLIP and key == "tower.text_projection":
        return tensors[0].T
    return tensors[0]


def text_encoder_from_state_dict(theirs: StateDict, config: TextEncoderConfig, layout: Layout,
                                 prefix: str = "") -> TextEncoder:
    """A TextEncoder with the tower stored under ``prefix`` in ``theirs``; every weight must be used and fit."""
    with torch.device("meta"):
        encoder = TextEncoder(config)
    ours = encoder.state_dict()
    used = {k for key in ours for k in their_keys(key, layout, prefix)}
    present = {k for k in theirs if k.startswith(prefix) and not NOT_WEIGHTS.search(k)}
    hint = ("set width, num_layers, num_heads and projection_dim of the TextEncoderConfig to the "
            "checkpoint's tower")
    if missing := sorted(used - present):
        raise KeyError(f"no {missing[0]!r} in the checkpoint ({len(missing)} of our weights are missing); {hint}.")
    if unexpected := sorted(present - used):
        raise ValueError(f"the checkpoint has {len(unexpected)} weight(s) under {prefix!r} this config lacks "
                         f"(first: {unexpected[0]!r}); {hint}.")
    converted = {key: their_tensor(theirs, key, layout, prefix) for key in ours}
    for key, tensor in ours.items():
        if converted[key].shape != tensor.shape:
            raise ValueError(f"{their_keys(key, layout, prefix)[0]!r} has shape {tuple(converted[key].shape)}, "
                             f"this config expects {tuple(tensor.shape)}; {hint}.")
    encoder.load_state_dict(converted, assign=True)
    tower = encoder.tower  # the causal mask is not in state dicts: rebuild it off the meta device
    tower.attn_mask = tower.build_causal_mask().to(tower.positional_embedding.device)
    return encoder


@dataclass(frozen=True)
class TextEncoderSlot:
    """Where a checkpoint keeps one text encoder, and how the model reads it."""

    prefix: str  # key prefix of the tower's weights
    layout: Layout
    config: TextEncoderConfig


# The text encoders of each original checkpoint family, in the order the conditioner concatenates them.
SD1_TEXT = (TextEncoderSlot("cond_stage_model.transformer.", Layout.HF_CLIP, CLIP_L14),)
SD2_TEXT = (TextEncoderSlot("cond_stage_model.model.", Layout.OPEN_CLIP, OPENCLIP_H14),)
SDXL_TEXT = (TextEncoderSlot("conditioner.embedders.0.transformer.", Layout.HF_CLIP, CLIP_L14_SDXL),
             TextEncoderSlot("conditioner.embedders.1.model.", Layout.OPEN_CLIP, OPENCLIP_BIGG14))
SDXL_REFINER_TEXT = (TextEncoderSlot("conditioner.embedders.0.model.", Layout.OPEN_CLIP, OPENCLIP_BIGG14),)
CHECKPOINT_FAMILIES = (SDXL_TEXT, SDXL_REFINER_TEXT, SD2_TEXT, SD1_TEXT)  # most specific first


def _holds(state_dict: StateDict, slot: TextEncoderSlot) -> bool:
    return any(k.startswith(slot.prefix) for k in state_dict)


def text_encoders_from_original(checkpoint: str | Path | StateDict,
                                slots: tuple[TextEncoderSlot, ...] | None = None) -> list[TextEncoder]:
    """The text encoders of an original SD 1.x / 2.x / SDXL (base or refiner) checkpoint, a local file or a
    state dict. ``slots`` says where they are; None recognises the family from the keys."""
    state = read_state_dict(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    if slots is None:
        slots = next((family for family in CHECKPOINT_FAMILIES if all(_holds(state, s) for s in family)), None)
        if slots is None:
            raise ValueError("found no text encoder under cond_stage_model.transformer./.model. (SD 1.x/2.x) or "
                             "conditioner.embedders.N.transformer./.model. (SDXL); pass slots=(TextEncoderSlot("
                             "prefix, layout, config), ...) for other checkpoints.")
    return [text_encoder_from_state_dict(state, s.config, s.layout, s.prefix) for s in slots]
