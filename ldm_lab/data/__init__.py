"""The three datasets: ``emoji`` (text-to-image), ``fashion_mnist`` (class-conditional), ``shapes`` (procedural,
with boxes, masks and SDXL size/crop metadata). Each module has ``fetch()``, ``info()`` and a torch ``Dataset``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ldm_lab.data import emoji, fashion_mnist, shapes
from ldm_lab.data.batching import collate
from ldm_lab.data.download import DatasetMissingError
from ldm_lab.data.emoji import EmojiDataset
from ldm_lab.data.fashion_mnist import FashionMNIST, load_fashion_mnist
from ldm_lab.data.shapes import ShapesConfig, ShapesDataset


@dataclass(frozen=True)
class DatasetSource:
    fetch: Callable[[], Path | None]  # make it available; returns where it lives (None: generated on demand)
    info: Callable[[], dict]          # {"num_images", "splits", "num_classes", "available", "how_to_get"}


DATASETS: dict[str, DatasetSource] = {
    "emoji": DatasetSource(emoji.fetch, emoji.info),
    "fashion_mnist": DatasetSource(fashion_mnist.fetch, fashion_mnist.info),
    "shapes": DatasetSource(lambda: None, shapes.info),
}


def _check_names(names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset {', '.join(map(repr, unknown))}; choose from {', '.join(DATASETS)}")


def fetch_datasets(names: Sequence[str] | None = None) -> dict[str, Path | None]:
    """Fetch and verify the named datasets (all by default); returns name -> its folder (None: procedural)."""
    names = list(names or DATASETS)
    _check_names(names)
    return {name: DATASETS[name].fetch() for name in names}


def dataset_info() -> dict[str, dict]:
    """Name -> image count, splits, class count, and whether it is on this machine (and how to get it)."""
    return {name: source.info() for name, source in DATASETS.items()}


__all__ = ["DATASETS", "DatasetMissingError", "EmojiDataset", "FashionMNIST", "ShapesConfig", "ShapesDataset",
           "collate", "dataset_info", "fetch_datasets", "load_fashion_mnist"]
