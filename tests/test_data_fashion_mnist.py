import gzip
import shutil

import pytest
import torch

from ldm_lab.data import fashion_mnist as fm
from ldm_lab.data.download import DatasetMissingError

pytestmark = pytest.mark.skipif(
    not fm.is_available(),
    reason="Fashion-MNIST cannot be installed here: `ldm-lab data fetch fashion_mnist` needs apt as root or a "
           "network for torchvision's downloader")


def test_70000_images_in_10_balanced_classes():
    counts = {}
    for split in ("train", "test"):
        images, labels = fm.load_fashion_mnist(split)
        assert images.dtype == torch.uint8 and images.shape == (fm.SPLIT_SIZES[split], 28, 28)
        counts[split] = torch.bincount(labels, minlength=10).tolist()
    assert sum(map(sum, counts.values())) == 70_000
    assert counts == {"train": [6000] * 10, "test": [1000] * 10}


def test_dataset_items():
    data = fm.FashionMNIST("test", size=32)
    item = data[0]
    assert item["image"].shape == (1, 32, 32) and item["image"].min() >= -1 and item["image"].max() <= 1
    assert item["caption"] == fm.CLASSES[item["label"]].lower()
    with pytest.raises(ValueError, match="unknown Fashion-MNIST split 'val'. Valid Fashion-MNIST splits: train, test"):
        fm.load_fashion_mnist("val")


def test_corrupt_user_copy_is_refused(tmp_path, monkeypatch):
    source = fm.find_folder()
    for name in fm.SHA256:
        shutil.copyfile(source / name, tmp_path / name)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as file:
        file.write(b"\x00" * 100)
    monkeypatch.setenv(fm.FOLDER_ENV, str(tmp_path))
    with pytest.raises(DatasetMissingError, match="t10k-labels-idx1-ubyte.gz"):
        fm.find_folder()
