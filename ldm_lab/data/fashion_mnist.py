"""Fashion-MNIST (Xiao et al. 2017): 60,000 + 10,000 grey 28x28 images in 10 classes — our
class-conditional dataset.

The IDX files are looked for, in order, in ``$LDM_LAB_FASHION_MNIST``, the data cache, and the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``). ``fetch()`` installs that package where apt
is available and we are root, and otherwise uses torchvision's downloader. Every file is checked by SHA-256.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ldm_lab.data.download import DatasetMissingError, has_checksum
from ldm_lab.names import unknown_name_error
from ldm_lab.paths import cache_dir

CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FOLDER_ENV = "LDM_LAB_FASHION_MNIST"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET = (f"run `ldm-lab data fetch fashion_mnist` (installs the Debian package {DEBIAN_PACKAGE} as root, "
              f"else downloads with torchvision), or set {FOLDER_ENV} to a folder holding the four IDX .gz files")


def _cache_folder() -> Path:
    return cache_dir() / "fashion-mnist"


def _candidate_folders() -> list[Path]:
    folders = [Path(os.environ[FOLDER_ENV]).expanduser()] if os.environ.get(FOLDER_ENV) else []
    return folders + [_cache_folder(), _cache_folder() / "FashionMNIST" / "raw", DEBIAN_DIR]


def find_folder() -> Path | None:
    """The first candidate folder holding all four files with the right checksums, else ``None``.

    A folder with the files present but a checksum wrong is an error: a corrupt copy is never used."""
    for folder in _candidate_folders():
        present = [folder / name for name in SHA256 if (folder / name).is_file()]
        if len(present) < len(SHA256):
            continue
        corrupt = [path.name for path in present if not has_checksum(path, SHA256[path.name])]
        if not corrupt:
            return folder
        if folder.is_relative_to(cache_dir()):
            shutil.rmtree(_cache_folder())  # ours to refetch
            continue
        raise DatasetMissingError(
            f"Fashion-MNIST files in {folder} fail their SHA-256 check: {', '.join(corrupt)}. "
            f"Replace them with the original files (for the Debian copy: "
            f"`apt-get install --reinstall {DEBIAN_PACKAGE}`).")
    return None


def is_available() -> bool:
    return find_folder() is not None


def fetch() -> Path:
    """Make sure the verified files are on this machine; return their folder."""
    if (folder := find_folder()) is not None:
        return folder
    if shutil.which("apt-get") and os.geteuid() == 0:
        for command in (["apt-get", "install", "-y", "-q", DEBIAN_PACKAGE], ["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", DEBIAN_PACKAGE]):
            subprocess.run(command, check=False, capture_output=True,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if (folder := find_folder()) is not None:
                return folder
    try:
        import torchvision

        torchvision.datasets.FashionMNIST(str(_cache_folder()), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(_cache_folder()), train=False, download=True)
    except Exception as error:  # no network, no mirror: say what to do instead
        raise DatasetMissingError(f"could not get Fashion-MNIST ({error}); {HOW_TO_GET}") from error
    if (folder := find_folder()) is None:
        raise DatasetMissingError(f"torchvision's download did not produce verified files; {HOW_TO_GET}")
    return folder


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (LeCun's MNIST format): magic, dimension sizes (big-endian int32), then uint8 data."""
    with gzip.open(path, "rb") as file:
        data = file.read()
    num_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(num_dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * num_dims).reshape(shape)


@lru_cache(maxsize=2)
def load_fashion_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N, 28, 28]`` and int64 labels ``[N]`` of ``split`` ('train' or 'test')."""
    if split not in FILES:
        raise unknown_name_error("Fashion-MNIST split", split, FILES)
    folder = find_folder()
    if folder is None:
        raise DatasetMissingError(f"Fashion-MNIST is not on this machine; {HOW_TO_GET}")
    images_file, labels_file = FILES[split]
    images = torch.from_numpy(_read_idx(folder / images_file).copy())
    labels = torch.from_numpy(_read_idx(folder / labels_file).astype(np.int64))
    return images, labels


def info() -> dict:
    return {"num_images": sum(SPLIT_SIZES.values()), "splits": dict(SPLIT_SIZES), "num_classes": len(CLASSES),
            "available": is_available(), "how_to_get": HOW_TO_GET}


class FashionMNIST(Dataset):
    """Items ``{"image": float [1, size, size] in [-1, 1], "label": int, "caption": class name}``."""

    def __init__(self, split: str = "train", size: int = 28):
        self.images, self.labels = load_fashion_mnist(split)
        self.size = size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index].float().div(127.5).sub(1).unsqueeze(0)  # [1, 28, 28], [-1, 1]
        if self.size != image.shape[-1]:
            image = torch.nn.functional.interpolate(image[None], size=(self.size, self.size), mode="bilinear",
                                                    antialias=True, align_corners=False)[0]
        label = int(self.labels[index])
        return {"image": image, "label": label, "caption": CLASSES[label].lower()}
