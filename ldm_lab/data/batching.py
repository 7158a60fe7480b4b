"""Batching dict items whose fields may be ragged (a scene's boxes) or plain Python values (captions, sizes)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

ALIAS_SEPARATOR = "; "  # between the names in an item's "aliases" field (no caption in our datasets holds a semicolon)


def join_aliases(names: Sequence[str]) -> str:
    """An item's other names for its caption as one string field ("" for none), so batches and latent caches carry
    it like the caption itself."""
    return ALIAS_SEPARATOR.join(names)


def split_aliases(field: str) -> list[str]:
    """The names ``join_aliases`` joined."""
    return field.split(ALIAS_SEPARATOR) if field else []


def collate(items: Sequence[dict]) -> dict:
    """Stack equal-shaped tensors to ``[B, ...]``, numbers and number tuples (sizes, crops) to tensors; keep
    ragged tensors (boxes ``[n_i, 4]``) and strings as lists. Use as ``DataLoader(..., collate_fn=collate)``."""
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, torch.Tensor) and all(v.shape == first.shape for v in values):
            batch[key] = torch.stack(values)
        elif isinstance(first, (int, float)) or (isinstance(first, tuple) and all(
                isinstance(x, (int, float)) for x in first)):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch


def split_batch(batch: dict, batch_size: int) -> Iterator[dict]:
    """A collated batch in pieces of at most ``batch_size`` items (stacked tensors and lists alike)."""
    for start in range(0, len(batch["image"]), batch_size):
        yield {key: value[start:start + batch_size] for key, value in batch.items()}
