"""SDXL's multi-aspect training (Podell et al. 2023, §2.3), scaled down to 64x64 Shapes.

SDXL partitions its data into aspect-ratio *buckets*: sizes whose pixel count stays as close to 1024² as possible,
height and width in multiples of 64, aspect ratios from 1:4 to 4:1 (App. I lists them). Each image goes to the
bucket nearest its aspect ratio, a training batch is drawn from one bucket, and the bucket's size is passed to the
model as the target size ``c_tgt = (h_tgt, w_tgt)``.

The lab equivalent keeps the rule and changes its numbers. SDXL's step of 64 pixels is its first stage's f = 8 times
8 (the latent's side stays a multiple of 8). For 64² images at f = 4 a step of 1/16 of the side (4 pixels) would give
latent sides the lab U-Net cannot halve twice, so the lab step is f x 4 = 16 pixels, the smallest whose latents it
can (``LatentDiffusion.size_multiple``). With a 7 % tolerance on the pixel count that leaves five buckets spanning
SDXL's range of aspect ratios: 128x32, 80x48, 64x64, 48x80 and 32x128.

    buckets = LAB_RULE.buckets()                                  # ((128, 32), (80, 48), (64, 64), ...)
    data = BucketedShapes("train", BucketedShapesConfig())        # each item at its bucket's size
    loader = DataLoader(data, batch_sampler=BucketBatchSampler(item_groups(data), 16, seed=0), collate_fn=collate)

Conventions as everywhere: sizes are (height, width), aspect ratios width / height.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
from torch.utils.data import Dataset, Subset

from ldm_lab.data.shapes import SPLIT_SEEDS, ShapesConfig, ShapesDataset, crop_corner, scene_item

Size = tuple[int, int]


@dataclass(frozen=True)
class BucketRule:
    """Which sizes are buckets: about ``base``² pixels, sides in multiples of ``multiple``, aspect ratios within
    [1 / max_aspect, max_aspect] (SDXL §2.3)."""

    base: int = 64              # side of the square training size; every bucket has about base² pixels
    multiple: int = 16          # sides are multiples of this (SDXL: 64 = f 8 x 8; lab: f 4 x 4, see the module doc)
    max_aspect: float = 4.0     # widest bucket's width / height, and the tallest's height / width (SDXL: 4)
    tolerance: float = 0.07     # a bucket's pixel count differs from base² by at most this fraction

    def __post_init__(self) -> None:
        if self.base % self.multiple:
            raise ValueError(f"the square size {self.base} must itself be a bucket: make it a multiple of "
                             f"{self.multiple}, or choose a multiple that divides it.")
        if self.max_aspect < 1 or self.tolerance < 0:
            raise ValueError(f"max_aspect must be >= 1 and tolerance >= 0, not {self.max_aspect}, {self.tolerance}")

    def buckets(self) -> tuple[Size, ...]:
        """Every (height, width) the rule allows, from the tallest to the widest."""
        pixels, step = self.base**2, self.multiple
        found = []
        for height in range(step, int(self.base * math.sqrt(self.max_aspect)) + step, step):
            for width in range(step, int(self.base * math.sqrt(self.max_aspect)) + step, step):
                aspect = width / height
                if (abs(height * width / pixels - 1) <= self.tolerance
                        and 1 / self.max_aspect - 1e-9 <= aspect <= self.max_aspect + 1e-9):
                    found.append((height, width))
        return tuple(sorted(found, key=lambda size: size[1] / size[0]))


SDXL_RULE = BucketRule(base=1024, multiple=64)   # SDXL's own numbers (§2.3), for comparison
LAB_RULE = BucketRule(base=64, multiple=16)      # the lab's: 64² Shapes, f = 4, a U-Net that halves twice
LAB_BUCKETS: tuple[Size, ...] = LAB_RULE.buckets()
SQUARE: tuple[Size, ...] = ((64, 64),)            # one bucket: square-only and centre-cropped training


def aspect(size: Size) -> float:
    """Width / height."""
    return size[1] / size[0]


def nearest_bucket(image_aspect: float, buckets: Sequence[Size]) -> int:
    """Index of the bucket whose aspect ratio is nearest ``image_aspect`` (width / height), measured in log ratio,
    so that 2:1 and 1:2 are equally far from 1:1."""
    if image_aspect <= 0:
        raise ValueError(f"an aspect ratio is width / height > 0, not {image_aspect}")
    distances = [abs(math.log(aspect(bucket) / image_aspect)) for bucket in buckets]
    return int(np.argmin(distances))


# ------------------------------------------------------------------------------------------- batch sampler
class BucketBatchSampler:
    """Infinite micro-batches of dataset indices, each from one bucket (SDXL §2.3), for one process.

    Epoch ``e``: each bucket's items shuffled (seeded by (seed, e, bucket)) and cut into batches of ``batch_size``
    (a bucket's last batch may be smaller), then all batches shuffled (seeded by (seed, e)), so every item is seen
    once per epoch. Like :class:`ldm_lab.training.data.SeededBatchSampler` it is a pure function of its position:
    ``start`` counts samples consumed at the nominal batch size (the trainer's ``samples_seen``), and process
    ``rank`` of ``world_size`` takes every ``world_size``-th batch, so a resumed run continues exactly."""

    def __init__(self, groups: Sequence[int], batch_size: int, seed: int, start: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if len(groups) < 1:
            raise ValueError("the dataset is empty: the trainer needs at least one sample.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self.groups = np.asarray(groups)
        self.batch_size, self.seed, self.start, self.rank, self.world_size = batch_size, seed, start, rank, world_size
        self.members = {int(g): np.flatnonzero(self.groups == g) for g in np.unique(self.groups)}
        self.batches_per_epoch = sum(math.ceil(len(m) / batch_size) for m in self.members.values())

    def epoch(self, epoch: int) -> list[list[int]]:
        """The batches of epoch ``epoch``, in the order they are drawn."""
        batches = []
        for group, members in self.members.items():
            order = np.random.default_rng([self.seed, epoch, group]).permutation(members)
            batches += [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        shuffle = np.random.default_rng([self.seed, epoch]).permutation(len(batches))
        return [batches[i] for i in shuffle]

    def __iter__(self) -> Iterator[list[int]]:
        index = self.start // self.batch_size + self.rank   # global batch counter
        cached_epoch, batches = None, []
        while True:
            epoch, offset = divmod(index, self.batches_per_epoch)
            if epoch != cached_epoch:
                cached_epoch, batches = epoch, self.epoch(epoch)
            yield batches[offset]
            index += self.world_size


def group_of(data: Dataset) -> Callable[[int], int] | None:
    """index -> batch group (its bucket) for datasets that must be batched within groups: those with a
    ``group(index)`` method, and subsets of them; None for ordinary datasets."""
    if isinstance(data, Subset):
        inner = group_of(data.dataset)
        return None if inner is None else (lambda index: inner(data.indices[index]))
    group = getattr(data, "group", None)
    return group if callable(group) else None


def item_groups(data: Dataset) -> list[int] | None:
    """Every item's batch group (``group_of``), or None for an ordinary dataset."""
    group = group_of(data)
    return None if group is None else [group(i) for i in range(len(data))]


# ---------------------------------------------------------------------------------------- Shapes at buckets
@dataclass(frozen=True)
class BucketedShapesConfig:
    """Shapes scenes "photographed" at a random aspect ratio and trained at the nearest bucket (SDXL §2.3).
    With ``buckets=SQUARE`` the same originals train as 64² crops (the pre-SDXL pipeline), and with
    ``max_aspect=1`` too, only square originals are kept (square-only training)."""

    buckets: tuple[Size, ...] = LAB_BUCKETS       # the sizes items are rendered at (each item: its nearest)
    max_aspect: float = 4.0                       # originals' width / height is log-uniform in [1/this, this]
    original_scale: tuple[float, float] = (1.0, 1.0)  # original's side / the side of the same-aspect image with
                                                  # the bucket's pixel count; (1, 1): no resizing beyond the bucket
    random_crop: bool = True                      # crop the slack left after covering the bucket at random (as
                                                  # recorded in crop_top_left), else centred
    num_images: int | None = None                 # items; None: the Shapes split's size
    max_shapes: int = 3                           # shapes per scene: 1 ... max_shapes
    seed: int = 0                                 # with the split and the index, fixes every item (the scenes
                                                  # are those of ShapesDataset with the same seed)

    def __post_init__(self) -> None:
        if not self.buckets:
            raise ValueError("give at least one bucket, e.g. LAB_BUCKETS or SQUARE")
        if self.max_aspect < 1:
            raise ValueError(f"max_aspect is the widest original's width / height, >= 1; got {self.max_aspect}")


class BucketedShapes(Dataset):
    """Shapes items (``ShapesDataset``'s fields) each rendered at its bucket's size: ``image`` [3, h, w] with
    (h, w) = ``target_size`` = the bucket nearest the original's aspect ratio; batch them with
    :class:`BucketBatchSampler` over :meth:`group` (the trainer does)."""

    def __init__(self, split: str = "train", config: BucketedShapesConfig = BucketedShapesConfig()) -> None:
        self.config = config
        self.scenes = ShapesDataset(split, ShapesConfig(num_images=config.num_images, max_shapes=config.max_shapes,
                                                        seed=config.seed))
        self.split = split

    def __len__(self) -> int:
        return len(self.scenes)

    def original_aspect(self, index: int) -> float:
        """Width / height of item ``index``'s original, log-uniform in [1/max_aspect, max_aspect]."""
        rng = np.random.default_rng([self.config.seed, SPLIT_SEEDS[self.split], index, 2])
        return float(math.exp(rng.uniform(-1, 1) * math.log(self.config.max_aspect)))

    def group(self, index: int) -> int:
        """Index (into ``config.buckets``) of item ``index``'s bucket (no rendering: about 0.2 ms)."""
        return nearest_bucket(self.original_aspect(index), self.config.buckets)

    def view(self, index: int) -> tuple[Size, Size, Size]:
        """``original_size``, ``target_size`` (the bucket) and ``crop_top_left`` of item ``index``."""
        config, image_aspect = self.config, self.original_aspect(index)
        target = config.buckets[nearest_bucket(image_aspect, config.buckets)]
        rng = np.random.default_rng([config.seed, SPLIT_SEEDS[self.split], index, 3])
        scale = rng.uniform(*config.original_scale)
        height = math.sqrt(target[0] * target[1] / image_aspect) * scale
        original = (max(1, round(height)), max(1, round(height * image_aspect)))
        return original, target, crop_corner(original, target, rng if config.random_crop else None)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} bucketed shapes items")
        original, target, crop = self.view(index)
        return scene_item(self.scenes.scene(index), original, target, crop)


# The three ways of training on the same multi-aspect originals that notebook 06 compares (SDXL §2.3):
BUCKETS = BucketedShapesConfig()                                  # each at its nearest bucket, as SDXL
CENTRE_CROP = BucketedShapesConfig(buckets=SQUARE, random_crop=False)  # resized to cover 64², centre-cropped
SQUARE_ONLY = BucketedShapesConfig(buckets=SQUARE, max_aspect=1.0)     # only square originals


def at_size(config: BucketedShapesConfig, size: Size) -> BucketedShapesConfig:
    """``config`` for square training size ``size``: its buckets rescaled by the same rule (multiples of a quarter of
    the side, so the same five aspect ratios), or the one square bucket."""
    if size[0] != size[1]:
        raise ValueError(f"bucketed datasets are built for a square training size (the bucket rule keeps its pixel "
                         f"count); got {size}. Pass (64, 64), and the buckets give the other aspect ratios.")
    if len(config.buckets) == 1:
        return replace(config, buckets=(tuple(size),))
    return replace(config, buckets=BucketRule(base=size[0], multiple=size[0] // 4).buckets())
