"""The frozen first stage's latents, encoded once before training instead of at every step.

A latent diffusion model never changes its first stage (LDM §3.3: E and D are trained first, then frozen), so
encoding every training image at every step repeats the same work each epoch. On a CPU that work is most of a
small model's step. We encode the training set once and keep, per item, what the encoder's output *distribution*
is, so that each step still draws a fresh latent as LDM's ``get_first_stage_encoding`` does:

* KL first stage: the posterior's mean and standard deviation, z = mean + std * eps drawn anew every step;
* VQ first stage: the pre-quantisation latent (``quant_conv(encoder(x))``, LDM's choice), deterministic (std 0).

Every other field of an item (caption, label, boxes, segmentation, sizes) is served unchanged, so conditions
work as before. The image itself is dropped: the task reads ``latent_mean`` / ``latent_std`` instead.

A training run keeps its cache in its folder (:class:`CacheFile`, safetensors in the materialised-dataset format),
so a resume loads it instead of encoding again (minutes for a Shapes run), and links it into a shared folder under
a name made from what it was made from, where another run of the same first stage, images and items finds it
(SDXL's ablations differ only in the conditions their items carry). The file records what it was made
from: the first stage's weights (a SHA-256), the dataset (name, split, resolution, and the code or materialised
copy that makes its items) and which items; a cache that differs in any of them is encoded again, saying why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from ldm_lab.data.buckets import item_groups
from ldm_lab.data.materialise import (Column, Encoding, FieldKind, MaterialisedDataset, columns_of,
                                      fingerprint, merge, save_columns)
from ldm_lab.device import model_device
from ldm_lab.files import TEMPORARY_PREFIX, atomic_file
from ldm_lab.models import LatentDiffusion
from ldm_lab.nn.distributions import DiagonalGaussian

MEAN, STD = "latent_mean", "latent_std"  # the batch keys of a cached latent's distribution


@torch.no_grad()
def latent_moments(model: LatentDiffusion, images: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of E(x) (unscaled; std is 0 for a VQ first stage's deterministic latent)."""
    model.check_images(images)
    first_stage = model.first_stage.eval()  # frozen, so always in eval mode (LatentDiffusion.train); a model fresh
    # from its constructor is not yet, and a VQ first stage trained with code restarts would restart codes here
    if first_stage.quantizer is not None:
        latent = model.raw_latents(images)
        return latent, torch.zeros_like(latent)
    posterior: DiagonalGaussian = first_stage.encode(images)
    return posterior.mean, posterior.std


def has_cached_latents(batch: dict) -> bool:
    return MEAN in batch


def sample_latents(batch: dict, scale: Tensor) -> Tensor:
    """z0 = scale * (mean + std * eps): a fresh draw of each cached posterior (LDM's ``scale_by_std`` scale)."""
    mean, std = batch[MEAN], batch[STD]
    return scale * (mean + std * torch.randn_like(mean))


CACHE_FORMAT = 1  # raise when the stored layout changes: older files are then encoded again


@dataclass(frozen=True)
class CacheFile:
    """Where a training run keeps its latent cache, so that a resume loads it instead of encoding again."""

    path: Path      # a safetensors file in the run folder
    dataset: str    # the dataset the items come from: name, split and resolution, e.g. "shapes train 64x64"
    shared_dir: Path | None = None  # a folder where runs share caches, named by their key (None: not shared)

    def shared(self, key: CacheKey) -> Path | None:
        """Where a cache made from ``key`` is shared: ``<shared_dir>/<SHA-256 of the key>.safetensors``."""
        if self.shared_dir is None:
            return None
        return self.shared_dir / f"{hashlib.sha256(json.dumps(asdict(key)).encode()).hexdigest()[:32]}.safetensors"


@dataclass(frozen=True)
class CacheKey:
    """What a stored cache was made from; a cache is used only where every field matches."""

    first_stage: str   # SHA-256 of the first stage's weights (the encoder that made the latents)
    dataset: str       # name, split and resolution
    source: str        # the code (fingerprint) or materialised copy that makes the items
    items: str         # SHA-256 of the indices of the items encoded, in order
    count: int         # how many items
    format: int = CACHE_FORMAT


WHY_STALE = {  # CacheKey field -> why a stored cache that differs in it cannot be used
    "first_stage": "its first stage's weights differ from this model's",
    "dataset": "it encodes another dataset, split or resolution",
    "source": "the dataset's items are made by other code or from another materialised copy now",
    "items": "it holds other items (a run of another length or seed sees others)",
    "count": "it holds another number of items",
    "format": "it was written in an older format",
}


def first_stage_fingerprint(model: LatentDiffusion) -> str:
    """SHA-256 of the first stage's state dict: names, dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in model.first_stage.state_dict().items():
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def base_items(data: Dataset) -> tuple[Dataset, list[int]]:
    """The dataset under ``data``'s ``Subset`` wrappers, and the indices of the items ``data`` holds, in order."""
    indices = list(range(len(data)))
    while isinstance(data, Subset):
        indices = [int(data.indices[i]) for i in indices]
        data = data.dataset
    return data, indices


def item_source(data: Dataset) -> str:
    """What makes a dataset's items: a materialised copy's file name (it carries the fingerprint of the code that
    made it), else the class and the fingerprint of its source code and settings."""
    if isinstance(data, MaterialisedDataset):
        return data.path.name
    try:
        return f"{type(data).__name__}-{fingerprint(data)}"
    except TypeError:  # a built-in container (a list of items) has no source file to hash
        return type(data).__name__


def cache_key(model: LatentDiffusion, data: Dataset, dataset: str) -> CacheKey:
    base, indices = base_items(data)
    items = hashlib.sha256(json.dumps(indices).encode()).hexdigest()
    return CacheKey(first_stage_fingerprint(model), dataset, item_source(base), items, len(indices))


def stored_key(path: Path) -> CacheKey | None:
    """The key a stored cache records (None: no file, or one that is not a readable cache)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as file:
            return CacheKey(**json.loads(file.metadata()["description"]))
    except (SafetensorError, OSError, KeyError, TypeError, ValueError):
        return None


def _latent_column(latents: Tensor) -> Column:
    """``[N, C, H, W]`` latents as a materialised tensor column (raw float32)."""
    shapes = torch.tensor([list(latents.shape[1:])] * len(latents), dtype=torch.int64)
    return Column(FieldKind.TENSOR, latents.dtype, Encoding.RAW, latents.reshape(-1), shapes)


class LatentCache(Dataset):
    """``data`` with each image replaced by its first-stage latent distribution, encoded once by ``model``.

    A model whose latent scale is not measured yet gets it here, as 1 / std of latents drawn for the first
    ``scale_items`` items (LDM's ``scale_by_std`` measures it on the first training batch; more items give the
    same quantity with less noise). With a ``store``, a cache stored there from the same first stage, dataset and
    items is loaded instead of encoded, and a newly encoded one is stored (atomically) for the next resume.
    ``keep``: the item fields held in memory (None: all); the stored file holds all of them."""

    def __init__(self, model: LatentDiffusion, data: Dataset, batch_size: int = 256, scale_items: int = 1024,
                 progress: bool = True, store: CacheFile | None = None, keep: Collection[str] | None = None) -> None:
        if model.first_stage is None:
            raise ValueError(f"{model.preset.name} works in pixel space: it has no first stage whose latents could "
                             "be cached. Train it on the images themselves.")
        if len(data) == 0:
            raise ValueError("a latent cache needs a dataset of items with an 'image' field; this one is empty.")
        self.keep = keep
        key = cache_key(model, data, store.dataset) if store is not None else None
        shared = store.shared(key) if store is not None else None
        if key is None or not self._load(store.path, key):
            if shared is not None and self._load(shared, key):
                _link(shared, store.path)   # the run keeps it, for a resume
            else:
                columns = self._encode(model, data, batch_size, progress)
                if store is not None:
                    self._store(store.path, key, columns)
                    if shared is not None and store.path.is_file():
                        _link(store.path, shared)
        if keep is not None:   # the stored file keeps every field, for runs that read others
            self.fields = [self._kept(item) for item in self.fields]
        if model.needs_latent_scale:
            first = {MEAN: self.mean[:scale_items], STD: self.std[:scale_items]}
            model.latent_scale.fill_(1.0 / sample_latents(first, torch.tensor(1.0)).float().std().item())

    def _encode(self, model: LatentDiffusion, data: Dataset, batch_size: int,
                progress: bool) -> list[dict[str, Column]] | None:
        """Encode every item; returns the fields as materialised columns per batch (None if a field cannot be
        stored)."""
        device = model_device(model)
        self.fields, means, stds, columns = [], [], [], []
        # Batch by batch: only ``batch_size`` images are in memory at once (50,000 Shapes scenes are 2.4 GB).
        for start in tqdm(range(0, len(data), batch_size), desc="encode latents", disable=not progress):
            items = [data[i] for i in range(start, min(start + batch_size, len(data)))]
            if "image" not in items[0]:
                raise ValueError("a latent cache needs a dataset of items with an 'image' field.")
            fields = [{k: v for k, v in item.items() if k != "image"} for item in items]
            self.fields += fields
            columns = _field_columns(fields, columns)
            mean, std = latent_moments(model, torch.stack([item["image"] for item in items]).to(device))
            means.append(mean.cpu())
            stds.append(std.cpu())
        self.mean, self.std = torch.cat(means), torch.cat(stds)
        return columns

    def _store(self, path: Path, key: CacheKey, columns: list[dict[str, Column]] | None) -> None:
        """Write the cache to ``path`` through a temporary file (a killed run leaves the old file or none)."""
        if columns is None:
            print(f"latent cache not stored: an item field cannot be written to {path.name}", flush=True)
            return
        for orphan in path.parent.glob(f"{TEMPORARY_PREFIX}*{path.stem}*"):  # left by a run killed mid-write
            orphan.unlink(missing_ok=True)
        fields = merge(columns) if columns else {}  # none: the items hold nothing but their image
        merged = {**fields, MEAN: _latent_column(self.mean), STD: _latent_column(self.std)}
        with atomic_file(path) as temporary:
            save_columns(merged, temporary, json.dumps(asdict(key)))

    def _load(self, path: Path, key: CacheKey) -> bool:
        """Load the cache stored at ``path`` if it was made from ``key``; say why not otherwise."""
        stored = stored_key(path)
        if stored is None:
            if path.exists():
                print(f"latent cache {path} is unreadable: encoding again", flush=True)
            return False
        if stored != key:
            reasons = [why for name, why in WHY_STALE.items() if getattr(stored, name) != getattr(key, name)]
            print(f"latent cache {path} not used ({'; '.join(reasons)}): encoding again", flush=True)
            return False
        items = MaterialisedDataset(path)
        shape = items.shapes[MEAN][0].tolist()
        self.mean = items.values[MEAN].reshape(len(items), *shape)
        self.std = items.values[STD].reshape(len(items), *shape)
        self.fields = [self._kept({name: value for name, value in items[i].items() if name not in (MEAN, STD)})
                       for i in range(len(items))]
        print(f"latent cache: {len(items):,} items loaded from {path} (same first stage, dataset and items)",
              flush=True)
        return True

    def _kept(self, item: dict) -> dict:
        return item if self.keep is None else {name: value for name, value in item.items() if name in self.keep}

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, index: int) -> dict:
        return {**self.fields[index], MEAN: self.mean[index], STD: self.std[index]}


def _link(path: Path, to: Path) -> None:
    """The cache at ``path`` at ``to`` as well: a hard link (no second copy), else a copy."""
    to.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(to) as temporary:
        try:
            os.link(path, temporary)
        except OSError:  # another file system
            shutil.copyfile(path, temporary)


def _field_columns(fields: list[dict], columns: list[dict[str, Column]] | None) -> list[dict[str, Column]] | None:
    """``columns`` with one more batch of item fields as materialised columns; None once a field cannot be
    stored (a type the materialised format does not hold)."""
    if columns is None:
        return None
    try:
        return [*columns, columns_of(fields)] if fields[0] else columns
    except TypeError:
        return None


class BucketedLatentCache(Dataset):
    """A :class:`LatentCache` per batch group of ``data`` (SDXL's aspect buckets, whose images differ in size),
    served as one dataset that keeps each item's index and group, so batches still never mix buckets."""

    def __init__(self, model: LatentDiffusion, data: Dataset, groups: list[int], progress: bool = True,
                 keep: Collection[str] | None = None) -> None:
        self.caches: dict[int, LatentCache] = {}
        self.place: list[tuple[int, int]] = [(0, 0)] * len(data)   # item -> (group, index in its group's cache)
        for group in sorted(set(groups)):
            members = [i for i, g in enumerate(groups) if g == group]
            self.caches[group] = LatentCache(model, Subset(data, members), progress=progress, keep=keep)
            for local, index in enumerate(members):
                self.place[index] = (group, local)

    def __len__(self) -> int:
        return len(self.place)

    def __getitem__(self, index: int) -> dict:
        group, local = self.place[index]
        return self.caches[group][local]

    def group(self, index: int) -> int:
        """The bucket of item ``index`` (``ldm_lab.data.buckets.group_of``)."""
        return self.place[index][0]


def cache_latents(model: LatentDiffusion, data: Dataset, progress: bool = True,
                  store: CacheFile | None = None, keep: Collection[str] | None = None) -> Dataset:
    """``data`` with its images replaced by their cached latent distributions: one :class:`LatentCache` (kept in
    ``store`` for a resume), or one per aspect bucket for a bucketed dataset (``ldm_lab.data.buckets.item_groups``;
    encoded at every start); ``keep``: the item fields held in memory (None: all)."""
    groups = item_groups(data)
    if groups is None:
        return LatentCache(model, data, progress=progress, store=store, keep=keep)
    return BucketedLatentCache(model, data, groups, progress=progress, keep=keep)
