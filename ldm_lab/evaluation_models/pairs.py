"""The image-caption pairs lab-clip trains and is measured on: emoji (name captions) and shapes (scene
descriptions), both RGB 64x64, decoded or rendered once and held in memory as uint8."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset
from tqdm.auto import tqdm

from ldm_lab.data import EmojiDataset, ShapesConfig, ShapesDataset

RESOLUTION = 64


class CaptionedImages(Dataset):
    """Items ``{"image": float [3, H, W] in [-1, 1], "caption": str}`` from uint8 images ``[N, 3, H, W]``."""

    def __init__(self, images: Tensor, captions: list[str]):
        if len(images) != len(captions) or images.dtype != torch.uint8:
            raise ValueError(f"need as many captions as uint8 images, got {len(captions)} captions for "
                             f"{images.dtype} images {list(images.shape)}")
        self.images, self.captions = images, list(captions)

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index].float() / 127.5 - 1, "caption": self.captions[index]}


def _materialise(dataset: Dataset, count: int, desc: str) -> CaptionedImages:
    items = [dataset[i] for i in tqdm(range(count), desc=desc, leave=False)]
    images = torch.stack([((item["image"] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for item in items])
    return CaptionedImages(images, [item["caption"] for item in items])


def emoji_pairs(split: str) -> CaptionedImages:
    """Every emoji of ``split`` ("train": 3,432, "val": 354) on white, with its name as caption."""
    dataset = EmojiDataset(split, RESOLUTION)
    return _materialise(dataset, len(dataset), f"emoji {split}")


def shapes_pairs(split: str, count: int) -> CaptionedImages:
    """The first ``count`` shapes scenes of ``split`` with their descriptions."""
    return _materialise(ShapesDataset(split, ShapesConfig(size=(RESOLUTION, RESOLUTION))), count, f"shapes {split}")


def training_pairs(num_shapes: int) -> ConcatDataset:
    """lab-clip's training set: emoji train + the first ``num_shapes`` shapes train scenes."""
    return ConcatDataset([emoji_pairs("train"), shapes_pairs("train", num_shapes)])
