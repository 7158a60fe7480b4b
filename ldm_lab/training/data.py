"""A batch stream that is a pure function of (seed, position), so a resumed run sees exactly the same data.

The index stream is the concatenation of one random permutation of the dataset per epoch,
``perm_e = permutation(n, rng=(seed, e))``. Micro-batch ``k`` of the *global* stream covers the positions
``[k * B * W, (k + 1) * B * W)`` (B = per-process batch, W = number of processes), and process ``r`` takes
the ``r``-th slice of ``B``. Resuming needs one integer, the number of samples consumed so far; it does not
matter how the DataLoader prefetched, or whether the process count changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ldm_lab.data.buckets import BucketBatchSampler, item_groups


def epoch_permutation(dataset_size: int, seed: int, epoch: int) -> np.ndarray:
    """The order of epoch ``epoch``: a permutation seeded by the pair (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(dataset_size)


class SeededBatchSampler:
    """Infinite micro-batches of dataset indices for one process, starting at sample position ``start``.

    A batch may straddle an epoch boundary; every sample is still seen once per epoch.
    """

    def __init__(self, dataset_size: int, batch_size: int, seed: int, start: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if dataset_size < 1:
            raise ValueError("the dataset is empty: the trainer needs at least one sample.")
        self.dataset_size, self.batch_size, self.seed = dataset_size, batch_size, seed
        self.start, self.rank, self.world_size = start, rank, world_size

    def indices(self, begin: int, end: int) -> list[int]:
        """Dataset indices at global stream positions ``[begin, end)``."""
        n = self.dataset_size
        out: list[int] = []
        while begin < end:
            epoch, offset = divmod(begin, n)
            take = min(end - begin, n - offset)
            out.extend(epoch_permutation(n, self.seed, epoch)[offset:offset + take].tolist())
            begin += take
        return out

    def __iter__(self) -> Iterator[list[int]]:
        position = self.start
        global_batch = self.batch_size * self.world_size
        while True:
            mine = position + self.rank * self.batch_size
            yield self.indices(mine, mine + self.batch_size)
            position += global_batch


def resumable_loader(data: Dataset | DataLoader, *, batch_size: int, seed: int, start: int, rank: int,
                     world_size: int, num_workers: int = 0,
                     collate_fn: Callable[[list], Any] | None = None) -> DataLoader:
    """A DataLoader over ``data`` driven by :class:`SeededBatchSampler`, or, for a dataset whose items come in
    groups that must not share a batch (SDXL's aspect buckets: ``ldm_lab.data.buckets.item_groups``), by
    :class:`~ldm_lab.data.buckets.BucketBatchSampler`.

    ``data`` is a map-style dataset (``len`` and integer indexing), or a DataLoader whose dataset and
    ``collate_fn`` are reused (its own sampler and batch size are replaced, so resuming stays exact).
    """
    if isinstance(data, DataLoader):
        collate_fn = collate_fn or data.collate_fn
        num_workers = num_workers or data.num_workers
        data = data.dataset
    if isinstance(data, IterableDataset) or not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
        raise TypeError(
            f"the trainer needs a map-style dataset (with __len__ and __getitem__), got {type(data).__name__}. "
            "It draws the batches itself so that a resumed run continues exactly; wrap a stream or generator "
            "in a Dataset (e.g. a list of samples) instead of passing an iterator of batches.")
    groups = item_groups(data)
    sampler = (SeededBatchSampler(len(data), batch_size, seed, start, rank, world_size) if groups is None else
               BucketBatchSampler(groups, batch_size, seed, start, rank, world_size))
    # Its own generator: otherwise creating the iterator would draw worker seeds from the global torch RNG,
    # which is part of the state a resume restores.
    return DataLoader(data, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
                      generator=torch.Generator().manual_seed(seed))


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors inside nested dicts, lists and tuples moved to ``device``; everything else unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to_device(value, device) for value in batch]
        return moved if isinstance(batch, list) else tuple(moved)
    return batch
