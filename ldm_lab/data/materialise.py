"""Datasets built once into tensors, so that training reads memory instead of rendering or decoding.

A Shapes scene takes milliseconds to render and an emoji is a PNG to decode and composite: on a GPU that is the
bottleneck. ``materialise`` builds the first N items of a dataset (all cores), stores them in one safetensors
file under the data cache (``$LDM_LAB_DATA/materialised/``), and :class:`MaterialisedDataset` serves the very
same items from it (boxes, labels, segmentation, size/crop metadata included):

    path = materialise("shapes", "train", (64, 64), num_items=20_000)
    data = training_dataset("shapes", (64, 64))      # the largest cached copy, else the dataset itself

Storage is lossless. Every non-string field is a tensor column: the items' values flattened and concatenated,
with each item's shape (so ragged fields such as a scene's boxes need nothing special). Images on the 8-bit grid
(x = k / 127.5 - 1, as every dataset here makes them) are stored as the bytes k; small non-negative integers
(segmentation maps) as uint8. Strings (captions) go in the file's metadata. The file name carries a fingerprint
of the dataset's source code, so a changed dataset is never served from a stale copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import multiprocessing
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ldm_lab.data import build_dataset
from ldm_lab.paths import cache_dir

FOLDER = "materialised"
CHUNK_SIZE = 256  # items per worker task


class FieldKind(str, Enum):
    """The Python type of an item field, restored exactly on reading."""

    TENSOR = "tensor"
    INT = "int"
    FLOAT = "float"
    INT_TUPLE = "int_tuple"   # sizes and crops: (height, width), (top, left)
    STR = "str"


class Encoding(str, Enum):
    """How a tensor column is stored (all lossless)."""

    RAW = "raw"               # as it is
    PIXELS = "pixels"         # floats k / 127.5 - 1 with integer k in [0, 255], stored as the uint8 k
    SMALL_INT = "small_int"   # integers in [0, 255], stored as uint8


@dataclass
class Column:
    """One field of N items: flattened values and per-item shapes (tensors), or the strings."""

    kind: FieldKind
    dtype: torch.dtype | None     # the items' tensor dtype (None for strings)
    encoding: Encoding
    values: Tensor | list[str]    # [sum of item sizes] (tensors) or N strings
    shapes: Tensor | None         # [N, ndim] int64 (tensors)


# --------------------------------------------------------------------------------------------- encoding
def _kind(value) -> FieldKind:
    if isinstance(value, Tensor):
        return FieldKind.TENSOR
    if isinstance(value, bool) or not isinstance(value, (int, float, tuple, str)):
        raise TypeError(f"cannot materialise a field of type {type(value).__name__}; items may hold tensors, ints, "
                        "floats, tuples of ints and strings.")
    if isinstance(value, tuple) and not all(isinstance(v, int) for v in value):
        raise TypeError(f"cannot materialise the tuple {value!r}: only tuples of ints (sizes, crops) are supported.")
    return {int: FieldKind.INT, float: FieldKind.FLOAT, tuple: FieldKind.INT_TUPLE, str: FieldKind.STR}[type(value)]


def _as_tensor(value) -> Tensor:
    return value if isinstance(value, Tensor) else torch.tensor(value, dtype=torch.float64 if isinstance(
        value, float) else torch.int64)


def _compact(values: Tensor) -> tuple[Encoding, Tensor]:
    """The smallest lossless storage of a flat tensor."""
    if values.is_floating_point():
        codes = ((values.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        if torch.equal(_expand(Encoding.PIXELS, codes, values.dtype), values):
            return Encoding.PIXELS, codes
    elif values.dtype != torch.bool and (values.numel() == 0 or (values.min() >= 0 and values.max() <= 255)):
        return Encoding.SMALL_INT, values.to(torch.uint8)
    return Encoding.RAW, values


def _expand(encoding: Encoding, stored: Tensor, dtype: torch.dtype) -> Tensor:
    """Inverse of :func:`_compact` (the same float ops as the datasets use, so the bits are identical)."""
    if encoding is Encoding.PIXELS:
        return (stored.float() / 127.5 - 1).to(dtype)
    return stored.to(dtype)


def columns_of(items: list[dict]) -> dict[str, Column]:
    """The items of a chunk as columns."""
    columns = {}
    for key, first in items[0].items():
        kind = _kind(first)
        if kind is FieldKind.STR:
            columns[key] = Column(kind, None, Encoding.RAW, [item[key] for item in items], None)
            continue
        tensors = [_as_tensor(item[key]) for item in items]
        shapes = torch.tensor([list(t.shape) for t in tensors], dtype=torch.int64)  # [N, ndim]
        encoding, values = _compact(torch.cat([t.reshape(-1) for t in tensors]))
        columns[key] = Column(kind, tensors[0].dtype, encoding, values, shapes)
    return columns


def merge(chunks: list[dict[str, Column]]) -> dict[str, Column]:
    """Concatenate chunk columns; a field stored differently in different chunks falls back to raw."""
    merged = {}
    for key, first in chunks[0].items():
        parts = [chunk[key] for chunk in chunks]
        if first.kind is FieldKind.STR:
            merged[key] = Column(first.kind, None, Encoding.RAW, [s for part in parts for s in part.values], None)
            continue
        if len({part.encoding for part in parts}) > 1:
            parts = [Column(p.kind, p.dtype, Encoding.RAW, _expand(p.encoding, p.values, p.dtype), p.shapes)
                     for p in parts]
        merged[key] = Column(first.kind, first.dtype, parts[0].encoding, torch.cat([p.values for p in parts]),
                             torch.cat([p.shapes for p in parts]))
    return merged


# ------------------------------------------------------------------------------------------- file format
def save_columns(columns: dict[str, Column], path: Path, description: str) -> Path:
    """One safetensors file: ``KEY.values`` and ``KEY.shapes`` per tensor field; the rest in its metadata."""
    tensors, fields, strings = {}, {}, {}
    for key, column in columns.items():
        fields[key] = {"kind": column.kind.value, "encoding": column.encoding.value,
                       "dtype": str(column.dtype).removeprefix("torch.") if column.dtype else None}
        if column.kind is FieldKind.STR:
            strings[key] = column.values
        else:
            tensors[f"{key}.values"], tensors[f"{key}.shapes"] = column.values.contiguous(), column.shapes
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file(tensors, str(partial), metadata={"fields": json.dumps(fields), "strings": json.dumps(strings),
                                               "description": description})
    partial.replace(path)  # atomic: a killed run leaves no half-written cache
    return path


class MaterialisedDataset(Dataset):
    """The items of a materialised dataset, identical (types, dtypes, values) to the original's."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        tensors = load_file(str(self.path))
        with open(self.path, "rb") as file:  # safetensors: 8-byte header length, then the JSON header
            metadata = json.loads(file.read(int.from_bytes(file.read(8), "little")))["__metadata__"]
        self.description = metadata["description"]
        self.strings: dict[str, list[str]] = json.loads(metadata["strings"])
        self.fields = {key: (FieldKind(f["kind"]), Encoding(f["encoding"]), f["dtype"] and getattr(torch, f["dtype"]))
                       for key, f in json.loads(metadata["fields"]).items()}
        self.values = {key: tensors[f"{key}.values"] for key in self.fields if key not in self.strings}
        self.shapes = {key: tensors[f"{key}.shapes"] for key in self.values}
        self.offsets = {key: torch.cat([torch.zeros(1, dtype=torch.int64), shape.prod(dim=1).cumsum(0)]).tolist()
                        for key, shape in self.shapes.items()}

    def __len__(self) -> int:
        return len(next(iter(self.shapes.values()))) if self.shapes else len(next(iter(self.strings.values())))

    def _field(self, key: str, index: int):
        kind, encoding, dtype = self.fields[key]
        if kind is FieldKind.STR:
            return self.strings[key][index]
        begin, end = self.offsets[key][index], self.offsets[key][index + 1]
        value = _expand(encoding, self.values[key][begin:end], dtype).reshape(self.shapes[key][index].tolist())
        if kind is FieldKind.INT:
            return int(value)
        if kind is FieldKind.FLOAT:
            return float(value)
        if kind is FieldKind.INT_TUPLE:
            return tuple(value.tolist())
        return value

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} materialised items of {self.path.name}")
        return {key: self._field(key, index) for key in self.fields}


# ----------------------------------------------------------------------------------------------- building
def fingerprint(dataset: Dataset) -> str:
    """10 hex digits of a hash of the dataset class's source file and of its settings (its plain and dataclass
    attributes): it changes when the code or the configuration that makes the items does."""
    settings = {key: value for key, value in sorted(vars(dataset).items())
                if isinstance(value, (int, float, str, tuple)) or dataclasses.is_dataclass(value)}
    source = Path(inspect.getsourcefile(type(dataset))).read_bytes()
    return hashlib.sha256(source + repr(settings).encode()).hexdigest()[:10]


def cache_path(name: str, split: str, size: tuple[int, int], num_items: int, dataset: Dataset) -> Path:
    return cache_dir() / FOLDER / f"{name}-{split}-{size[0]}x{size[1]}-n{num_items}-{fingerprint(dataset)}.safetensors"


_worker_dataset: Dataset | None = None


def _start_worker(name: str, split: str, size: tuple[int, int]) -> None:
    global _worker_dataset
    torch.set_num_threads(1)  # one process per core
    _worker_dataset = build_dataset(name, split, size)


def _encode_chunk(indices: range) -> dict[str, Column]:
    return columns_of([_worker_dataset[i] for i in indices])


def materialise(name: str, split: str = "train", size: tuple[int, int] = (64, 64), num_items: int | None = None,
                workers: int | None = None, progress: bool = True) -> Path:
    """Build the first ``num_items`` items (default: all) of dataset ``name`` into the cache; return the file
    (an existing copy is reused). ``workers`` processes (default: every core) build chunks in parallel."""
    dataset, size = build_dataset(name, split, size), tuple(size)
    num_items = len(dataset) if num_items is None else num_items
    if not 0 < num_items <= len(dataset):
        raise ValueError(f"num_items must be in 1..{len(dataset)} (the size of {name} {split}), got {num_items}.")
    path = cache_path(name, split, size, num_items, dataset)
    if path.is_file():
        return path
    chunks = [range(start, min(start + CHUNK_SIZE, num_items)) for start in range(0, num_items, CHUNK_SIZE)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    bar = dict(total=len(chunks), desc=f"materialise {name} {split}", disable=not progress)
    if workers == 1:
        _start_worker(name, split, size)
        encoded = [_encode_chunk(chunk) for chunk in tqdm(chunks, **bar)]
    else:
        with multiprocessing.get_context().Pool(workers, _start_worker, (name, split, size)) as pool:
            encoded = list(tqdm(pool.imap(_encode_chunk, chunks), **bar))
    description = f"{name} {split}, first {num_items:,} items at {size[0]}x{size[1]}"
    return save_columns(merge(encoded), path, description)


def _item_count(path: Path) -> int:
    """N of a cache file named ``NAME-SPLIT-HxW-nN-FINGERPRINT.safetensors``."""
    return int(path.stem.rsplit("-", 2)[1].removeprefix("n"))


def find_materialised(name: str, split: str, size: tuple[int, int]) -> Path | None:
    """The cached copy of ``name`` at ``size`` with the most items (and the current fingerprint), if any."""
    dataset = build_dataset(name, split, size)
    pattern = f"{name}-{split}-{size[0]}x{size[1]}-n*-{fingerprint(dataset)}.safetensors"
    copies = list((cache_dir() / FOLDER).glob(pattern))
    return max(copies, key=_item_count, default=None)


def training_dataset(name: str, size: tuple[int, int], split: str = "train") -> Dataset:
    """The materialised copy of a dataset when the cache holds one (``materialise`` made it), else the dataset."""
    path = find_materialised(name, split, tuple(size))
    return MaterialisedDataset(path) if path is not None else build_dataset(name, split, tuple(size))


def describe_training_data(name: str, size: tuple[int, int], split: str = "train") -> str:
    """What :func:`training_dataset` trains on, in words (for manifests)."""
    path = find_materialised(name, split, tuple(size))
    if path is not None:
        return f"{name} {split}, first {_item_count(path):,} items at {size[0]}x{size[1]} (materialised)"
    return f"{name} {split}, {len(build_dataset(name, split, tuple(size))):,} items at {size[0]}x{size[1]}"
