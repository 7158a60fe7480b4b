"""CLIP score: how well images match their prompts, as the cosine of their CLIP embeddings.

Scale convention: ``100 * max(cos(image, text), 0)`` per pair, as torchmetrics' ``CLIPScore`` and most diffusion
papers report it (SD / SDXL tables: about 25-35 with OpenAI ViT-L/14). Hessel et al. (2021) define
CLIP-S = ``2.5 * max(cos, 0)``, i.e. our number / 40. Scores depend on the encoder: lab-clip numbers compare only
with lab-clip numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ldm_lab.device import model_device, resolve_device
from ldm_lab.evaluation_models.lab_clip import load_lab_clip, tokenize
from ldm_lab.metrics.images import check_uint8, to_unit_range

CLIP_SCORE_SCALE = 100.0


@dataclass(frozen=True)
class DualEncoder:
    """What a CLIP score needs from a CLIP-style model (open_clip's ``encode_image`` / ``encode_text`` API)."""
    name: str                                   # recorded next to every score, e.g. "lab-clip"
    model: nn.Module
    tokenize: Callable[[list[str]], Tensor]     # captions -> token ids [B, context_length]
    image_size: int                             # square input side of the image tower
    mean: tuple[float, float, float]            # per-channel normalisation of [0, 1] pixels
    std: tuple[float, float, float]

    def pixels(self, images: Tensor) -> Tensor:
        """uint8 ``[N, C, H, W]`` -> the image tower's normalised float input ``[N, 3, size, size]``."""
        unit = (to_unit_range(images, 3, self.image_size) + 1) / 2            # [0, 1]
        mean, std = (unit.new_tensor(v).view(1, 3, 1, 1) for v in (self.mean, self.std))
        return (unit - mean) / std


def lab_clip_encoder(device: torch.device | str | None = None) -> DualEncoder:
    """The shipped lab-clip; it was trained on pixels in [-1, 1], i.e. mean = std = 0.5 on [0, 1] pixels."""
    model = load_lab_clip(resolve_device(device))
    return DualEncoder("lab-clip", model, lambda captions: tokenize(captions, model.context_length),
                       model.visual.image_size[0], (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def openclip_encoder(model_name: str, checkpoint: str | Path, device: torch.device | str | None = None,
                     preprocess: dict | None = None) -> DualEncoder:
    """An OpenCLIP model (e.g. ``"ViT-H-14"``) from weights a user has locally; never downloads.
    ``preprocess`` overrides open_clip's pixel normalisation (``{"mean": ..., "std": ...}``), which for a file
    defaults to OpenAI's (right for the LAION checkpoints)."""
    import open_clip

    checkpoint = Path(checkpoint).expanduser()
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"no OpenCLIP checkpoint at {checkpoint}; download one yourself (e.g. open_clip_model.safetensors from "
            f"the model's page) and pass its path, or use lab_clip_encoder()")
    model = open_clip.create_model(model_name, pretrained=str(checkpoint), weights_only=True,
                                   device=resolve_device(device), force_preprocess_cfg=preprocess).eval()
    config = model.visual.preprocess_cfg
    size = config["size"][0] if isinstance(config["size"], (tuple, list)) else config["size"]
    return DualEncoder(model_name, model, open_clip.get_tokenizer(model_name), int(size), tuple(config["mean"]),
                       tuple(config["std"]))


@torch.no_grad()
def clip_scores(images: Tensor, captions: Sequence[str], encoder: DualEncoder, batch_size: int = 64) -> Tensor:
    """Per-pair scores ``[N]``: ``100 * max(cos(image_i, caption_i), 0)`` for uint8 images ``[N, C, H, W]``."""
    if len(check_uint8(images)) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions; CLIP score pairs image i with "
                         "caption i")
    device = model_device(encoder.model)
    scores = []
    for start in range(0, len(images), batch_size):
        image_features = encoder.model.encode_image(encoder.pixels(images[start:start + batch_size]).to(device))
        text_features = encoder.model.encode_text(encoder.tokenize(list(captions[start:start + batch_size]))
                                                  .to(device))
        cosine = F.cosine_similarity(image_features, text_features, dim=-1)
        scores.append(CLIP_SCORE_SCALE * cosine.clamp(min=0).cpu())
    return torch.cat(scores)


def clip_score(images: Tensor, captions: Sequence[str], encoder: DualEncoder, batch_size: int = 64) -> float:
    """The mean CLIP score of a set (see ``clip_scores``; ``mean_interval`` gives its confidence interval)."""
    return clip_scores(images, captions, encoder, batch_size).mean().item()
