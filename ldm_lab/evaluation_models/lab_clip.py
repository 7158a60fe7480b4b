"""lab-clip: a small CLIP-style dual encoder (Radford et al. 2021) trained on emoji and shapes captions.

It is open_clip's own ``open_clip.model.CLIP`` with a small ViT image tower and a small text transformer, and
open_clip's bundled BPE tokenizer (49,408 tokens, context 77, padding 0), so code written for OpenCLIP runs on it
unchanged. It gives us a CLIP score and a second FID feature space (its image tower) with no OpenAI or LAION
weights. Its scores are comparable only with each other, never with the papers' CLIP scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from open_clip.loss import ClipLoss
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from torch import Tensor

from ldm_lab.checkpoints import config_from_fields, load_checkpoint
from ldm_lab.nn import text

CHECKPOINT_NAME = "lab-clip"
MAX_LOGIT_SCALE = 100.0  # open_clip clamps the learned temperature at 100 (Radford et al. 2021, §2.5)


@dataclass(frozen=True)
class LabClipConfig:
    """Sizes of the two towers. Images are RGB in [-1, 1] at ``image_size``."""
    embed_dim: int = 128          # width of the joint image-text space
    image_size: int = 64
    patch_size: int = 16          # 64 / 16: a 4x4 grid of 16 patch tokens (cheap enough for a CPU)
    vision_width: int = 96
    vision_layers: int = 4
    vision_head_width: int = 32   # vision heads = vision_width / vision_head_width
    text_width: int = 64          # the 49,408 x text_width token table is most of the file
    text_layers: int = 3
    text_heads: int = 4
    context_length: int = 77      # as in CLIP and Stable Diffusion


def build_lab_clip(config: LabClipConfig = LabClipConfig()) -> CLIP:
    """An untrained ``open_clip.model.CLIP`` of the given sizes."""
    vision = CLIPVisionCfg(layers=config.vision_layers, width=config.vision_width,
                           head_width=config.vision_head_width, patch_size=config.patch_size,
                           image_size=config.image_size)
    text = CLIPTextCfg(context_length=config.context_length, width=config.text_width, heads=config.text_heads,
                       layers=config.text_layers)
    return CLIP(embed_dim=config.embed_dim, vision_cfg=vision, text_cfg=text)


def tokenize(captions: list[str], context_length: int = 77) -> Tensor:
    """Token ids ``[B, context_length]``: start 49406, BPE tokens, end 49407, then padding 0 — the text
    encoders' tokenizer (``ldm_lab.nn.text.tokenize``) with open_clip's padding."""
    return text.tokenize(list(captions), context_length, pad_token_id=0)


def contrastive_loss(model: CLIP, batch: dict) -> Tensor:
    """Symmetric InfoNCE over a batch ``{"image": [B, 3, H, W] in [-1, 1], "caption": list of B str}``:
    each image must pick its own caption among the batch's, and each caption its image (CLIP, Fig. 3)."""
    tokens = tokenize(batch["caption"], model.context_length).to(batch["image"].device)
    image_features, text_features, logit_scale = model(batch["image"], tokens)
    return ClipLoss()(image_features, text_features, logit_scale.clamp(max=MAX_LOGIT_SCALE))


@torch.no_grad()
def embed_images(model: CLIP, images: Tensor, batch_size: int = 256) -> Tensor:
    """Unit-norm image embeddings ``[N, embed_dim]`` of float images ``[N, 3, H, W]`` in [-1, 1]."""
    device = model.logit_scale.device
    return torch.cat([model.encode_image(images[i:i + batch_size].to(device), normalize=True).cpu()
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def embed_texts(model: CLIP, captions: list[str], batch_size: int = 256) -> Tensor:
    """Unit-norm text embeddings ``[N, embed_dim]``."""
    device = model.logit_scale.device
    return torch.cat([model.encode_text(tokenize(captions[i:i + batch_size], model.context_length).to(device),
                                        normalize=True).cpu() for i in range(0, len(captions), batch_size)])


def load_lab_clip(device: torch.device | str = "cpu", folder: Path | None = None) -> CLIP:
    """The shipped lab-clip (checksum-verified), in eval mode."""
    state, entry = load_checkpoint(CHECKPOINT_NAME, folder)
    model = build_lab_clip(config_from_fields(LabClipConfig, entry.config))
    model.load_state_dict(state)
    return model.to(device).eval()

