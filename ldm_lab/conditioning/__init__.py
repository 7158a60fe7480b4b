"""Conditioning (LDM §3.3): the domain-specific encoders tau_theta and the conditioner that feeds the U-Net.

* class labels: a learned embedding per class plus a null class (``ClassEmbedder``; LDM's cin models),
* prompts: a CLIP text tower, trained from scratch (LDM §4.3) or frozen (SD) (``TextEmbedder``),
* layouts: boxes as (l, b, c) token triples through a transformer encoder, at most 92 tokens (``LayoutEmbedder``;
  LDM Tab. 17),
* segmentation maps: one-hot channels concatenated to the latent (``SegmentationEmbedder``; LDM §4.3.2),
* SDXL micro-conditioning: Fourier features of size, crop and aesthetic score (``FourierEmbedder``; SDXL §2.2),

each declaring what it outputs (``Output``: context tokens, a vector, class ids or concat channels) and how wide,
so a ``Conditioner`` can be checked against a U-Net before it runs. Which conditions each preset takes is its
family's business: ``ldm_lab.presets.conditioner_config``.
"""

from ldm_lab.conditioning.attention_maps import CrossAttentionMap, record_cross_attention, token_maps
from ldm_lab.conditioning.base import Embedder, Null, Output
from ldm_lab.conditioning.class_embedder import ClassEmbedder, ClassEmbedderConfig
from ldm_lab.conditioning.conditioner import (
           Conditioner,
           ConditionerConfig,
           ConditionSpec,
           assemble,
)
from ldm_lab.conditioning.layout import (
           LayoutEmbedder,
           LayoutEmbedderConfig,
           layout_tokens,
           position_tokens,
)
from ldm_lab.conditioning.micro import FourierEmbedder, FourierEmbedderConfig
from ldm_lab.conditioning.segmentation import (
           SegmentationEmbedder,
           SegmentationEmbedderConfig,
)
from ldm_lab.conditioning.text import TextEmbedder, TextEmbedderConfig, chunk_tokens, token_strings

__all__ = ["ClassEmbedder", "ClassEmbedderConfig", "ConditionSpec", "Conditioner",
           "ConditionerConfig", "CrossAttentionMap", "Embedder", "FourierEmbedder", "FourierEmbedderConfig",
           "LayoutEmbedder", "LayoutEmbedderConfig", "Null", "Output", "SegmentationEmbedder",
           "SegmentationEmbedderConfig", "TextEmbedder", "TextEmbedderConfig", "assemble", "chunk_tokens",
           "layout_tokens", "position_tokens", "record_cross_attention", "token_maps", "token_strings"]
