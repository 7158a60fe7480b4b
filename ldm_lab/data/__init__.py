"""The three datasets: ``emoji`` (text-to-image), ``fashion_mnist`` (class-conditional), ``shapes`` (procedural,
with boxes, masks and SDXL size/crop metadata). Each module has ``fetch()``, ``info()`` and a torch ``Dataset``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ldm_lab.data import buckets, emoji, fashion_mnist, shapes
from ldm_lab.data.batching import collate, split_batch
from ldm_lab.data.download import DatasetMissingError
from ldm_lab.data.emoji import EmojiDataset, MultiscaleEmoji
from ldm_lab.data.fashion_mnist import FashionMNIST, load_fashion_mnist
from ldm_lab.data.sdxl_variants import DetailScored, HiddenConditions, LargeOriginals
from ldm_lab.data.shapes import ShapesConfig, ShapesDataset
from ldm_lab.names import unknown_name_error


@dataclass(frozen=True)
class DatasetSource:
    fetch: Callable[[], Path | None]  # make it available; returns where it lives (None: generated on demand)
    info: Callable[[], dict]          # {"num_images", "splits", "num_classes", "available", "how_to_get"}
    build: Callable[[str, tuple[int, int]], Dataset]  # (split, (height, width)) -> the torch Dataset
    held_out_split: str               # the split validation and evaluation use
    feature_space: str                # ldm_lab.metrics.FEATURE_SPACES name its FID/KID are measured in by default
    num_classes: int                  # labels 0 .. num_classes - 1 of its items (class-conditional models add a
                                      # null class for guidance on top)
    images_of: str | None = None      # the dataset whose images its items are, with other conditions (a view, such
                                      # as HiddenConditions): a latent cache of that one serves this one too


def _square(name: str, size: tuple[int, int]) -> int:
    if size[0] != size[1]:
        raise ValueError(f"{name} images are square; got size {size}. Use shapes for other aspect ratios.")
    return size[0]


DATASETS: dict[str, DatasetSource] = {
    "emoji": DatasetSource(emoji.fetch, emoji.info, held_out_split="val", feature_space="lab-clip",
                           num_classes=len(emoji.CATEGORIES),
                           build=lambda split, size: EmojiDataset(split, resolution=_square("emoji", size))),
    # The base emoji only, without skin-tone variants: each emoji one item, so an epoch shows every emoji once
    # instead of each person six times (1,727 of the 3,432 training items; 184 of 354 held out).
    "emoji_base": DatasetSource(emoji.fetch, emoji.info, held_out_split="val", feature_space="lab-clip",
                                num_classes=len(emoji.CATEGORIES),
                                build=lambda split, size: EmojiDataset(split, resolution=_square("emoji", size),
                                                                       skin_tones=False)),
    # emoji_base for SDXL's micro-conditioning (notebook 05's SDXL-like model): each emoji drawn at 0.25x-1x the
    # training size on a canvas up to 1.5x wider or taller, resized to cover it and randomly cropped.
    "emoji_multiscale": DatasetSource(emoji.fetch, emoji.info, held_out_split="val", feature_space="lab-clip",
                                      num_classes=len(emoji.CATEGORIES),
                                      build=lambda split, size: MultiscaleEmoji(split, _square("emoji", size))),
    "fashion_mnist": DatasetSource(fashion_mnist.fetch, fashion_mnist.info, held_out_split="test",
                                   feature_space="fmnist-classifier", num_classes=len(fashion_mnist.CLASSES),
                                   build=lambda split, size: FashionMNIST(split, _square("fashion_mnist", size))),
    "shapes": DatasetSource(lambda: None, shapes.info, held_out_split="val", feature_space="lab-clip",
                            num_classes=len(shapes.KINDS),  # the kind of the largest shape; boxes have kinds too
                            build=lambda split, size: ShapesDataset(split, ShapesConfig(size=size))),
    # SDXL's micro-conditioning needs images that were really resized and cropped: scenes "photographed" at 0.25x
    # to 2x the target size (ShapesConfig.original_scale), resized to cover it and randomly cropped (lab-sdxl).
    "shapes_multiscale": DatasetSource(
        lambda: None, shapes.info, held_out_split="val", feature_space="lab-clip", num_classes=len(shapes.KINDS),
        build=lambda split, size: ShapesDataset(split, ShapesConfig(size=size, original_scale=(0.25, 2.0)))),
}


def _shapes_source(build: Callable[[str, tuple[int, int]], Dataset], images_of: str | None = None
                   ) -> DatasetSource:
    return DatasetSource(lambda: None, shapes.info, held_out_split="val", feature_space="lab-clip",
                         num_classes=len(shapes.KINDS), build=build, images_of=images_of)


# SDXL's ablations (notebook 06; ldm_lab.data.sdxl_variants, ldm_lab.data.buckets): shapes_multiscale without its
# small originals (Tab. 2 "512² only"), with the original size or the crop hidden, with a detail score as the
# refiner's aesthetic score (§2.5), and multi-aspect originals trained at aspect buckets, centre-cropped to squares,
# or square-only (§2.3).
DATASETS.update({
    "shapes_multiscale_large": _shapes_source(
        lambda split, size: LargeOriginals(DATASETS["shapes_multiscale"].build(split, size))),
    "shapes_multiscale_no_size": _shapes_source(
        lambda split, size: HiddenConditions(DATASETS["shapes_multiscale"].build(split, size), ("original_size",)),
        images_of="shapes_multiscale"),
    "shapes_multiscale_no_crop": _shapes_source(
        lambda split, size: HiddenConditions(DATASETS["shapes_multiscale"].build(split, size), ("crop_top_left",)),
        images_of="shapes_multiscale"),
    "shapes_multiscale_scored": _shapes_source(
        lambda split, size: DetailScored(DATASETS["shapes_multiscale"].build(split, size))),
    "shapes_buckets": _shapes_source(
        lambda split, size: buckets.BucketedShapes(split, buckets.at_size(buckets.BUCKETS, size))),
    "shapes_centre_crop": _shapes_source(
        lambda split, size: buckets.BucketedShapes(split, buckets.at_size(buckets.CENTRE_CROP, size))),
    "shapes_square": _shapes_source(
        lambda split, size: buckets.BucketedShapes(split, buckets.at_size(buckets.SQUARE_ONLY, size))),
})


def _check_names(names: Sequence[str]) -> None:
    for name in names:
        if name not in DATASETS:
            raise unknown_name_error("dataset", name, DATASETS)


def build_dataset(name: str, split: str, size: tuple[int, int]) -> Dataset:
    """Dataset ``name`` at image size (height, width); ``split`` "val" means its held-out split (Fashion-MNIST's
    "test"). Items are dicts with ``image`` in [-1, 1], ``label`` and ``caption``."""
    _check_names([name])
    source = DATASETS[name]
    return source.build(source.held_out_split if split == "val" else split, tuple(size))


def held_out_sample(name: str, size: tuple[int, int], num_samples: int, seed: int = 0) -> dict:
    """The first ``num_samples`` items of the held-out split in a fixed shuffled order, collated: the real images
    every evaluation here (``ldm-lab eval``, the notebooks' FIDs) compares against."""
    data, order = _held_out_order(name, size, num_samples, seed)
    return collate([data[i] for i in order])


def held_out_batches(name: str, size: tuple[int, int], num_samples: int, batch_size: int,
                     seed: int = 0) -> Iterator[dict]:
    """The items of :func:`held_out_sample` in collated batches of at most ``batch_size``; a dataset of aspect
    buckets (``buckets.item_groups``) in batches from one bucket each, since images of different sizes do not
    stack."""
    data, order = _held_out_order(name, size, num_samples, seed)
    groups = buckets.item_groups(data)
    for group in sorted(set(groups)) if groups is not None else [None]:
        members = [i for i in order if groups is None or groups[i] == group]
        for start in range(0, len(members), batch_size):
            yield collate([data[i] for i in members[start:start + batch_size]])


def _held_out_order(name: str, size: tuple[int, int], num_samples: int, seed: int) -> tuple[Dataset, list[int]]:
    data = build_dataset(name, "val", size)
    if num_samples > len(data):
        raise ValueError(f"asked for {num_samples} images, but {name}'s held-out split has {len(data)}; "
                         f"ask for at most {len(data)}.")
    return data, torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num_samples].tolist()


def fetch_datasets(names: Sequence[str] | None = None) -> dict[str, Path | None]:
    """Fetch and verify the named datasets (all by default); returns name -> its folder (None: procedural)."""
    names = list(names or DATASETS)
    _check_names(names)
    return {name: DATASETS[name].fetch() for name in names}


def dataset_info() -> dict[str, dict]:
    """Name -> image count, splits, class count, and whether it is on this machine (and how to get it)."""
    return {name: source.info() for name, source in DATASETS.items()}


__all__ = ["DATASETS", "DatasetMissingError", "EmojiDataset", "FashionMNIST", "MultiscaleEmoji", "ShapesConfig", "ShapesDataset",
           "build_dataset", "collate", "dataset_info", "fetch_datasets", "held_out_batches", "held_out_sample",
           "load_fashion_mnist",
           "split_batch"]
