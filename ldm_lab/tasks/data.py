"""The dataset of each training target, at the resolution its model is built for."""

from __future__ import annotations

from typing import Literal

from torch.utils.data import Dataset

from ldm_lab.data import EmojiDataset, FashionMNIST, ShapesConfig, ShapesDataset

DatasetName = Literal["fashion_mnist", "emoji", "shapes"]
DATASET_NAMES: tuple[str, ...] = ("fashion_mnist", "emoji", "shapes")
VALIDATION_SPLIT = {"fashion_mnist": "test", "emoji": "val", "shapes": "val"}  # held-out split of each


def build_dataset(name: DatasetName | str, split: str, resolution: tuple[int, int]) -> Dataset:
    """``name``'s ``split`` ("train", or "val" for the held-out split) with images of ``resolution`` (h, w).
    Items are dicts with ``image`` in [-1, 1], ``label`` and ``caption`` (``ldm_lab.data``)."""
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}.")
    split = VALIDATION_SPLIT[name] if split == "val" else split
    height, width = resolution
    if name == "shapes":
        return ShapesDataset(split, ShapesConfig(size=(height, width)))
    if height != width:
        raise ValueError(f"{name} images are square; got resolution {resolution}. Use shapes for other aspects.")
    return FashionMNIST(split, size=height) if name == "fashion_mnist" else EmojiDataset(split, resolution=height)
