"""Materialised datasets serve exactly the items of the dataset they were built from."""

import pytest
import torch

from ldm_lab.data import build_dataset, emoji, fashion_mnist
from ldm_lab.data.materialise import (Encoding, MaterialisedDataset, columns_of, find_materialised, fingerprint,
                                      materialise, merge, save_columns, training_dataset)
from ldm_lab.data.shapes import ShapesConfig, ShapesDataset
from ldm_lab.paths import DATA_ENV


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty data cache that still finds the emoji download."""
    if emoji.is_available():
        (tmp_path / "emoji").symlink_to(emoji._folder().parent)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    return tmp_path


def assert_same_item(ours: dict, theirs: dict) -> None:
    assert list(ours) == list(theirs)
    for key, expected in theirs.items():
        actual = ours[key]
        assert type(actual) is type(expected), key
        if isinstance(expected, torch.Tensor):
            assert actual.dtype == expected.dtype and actual.shape == expected.shape, key
            assert torch.equal(actual, expected), key
        else:
            assert actual == expected, key


def test_shapes_items_with_boxes_masks_and_sizes_are_identical(cache):
    # Two workers and chunks of 256 items: the multiprocessing path and chunk merging both run.
    path = materialise("shapes", "train", (48, 64), num_items=300, workers=2, progress=False)
    stored, original = MaterialisedDataset(path), build_dataset("shapes", "train", (48, 64))
    assert len(stored) == 300
    assert stored.fields["image"][1] is Encoding.PIXELS and stored.fields["segmentation"][1] is Encoding.SMALL_INT
    for index in (0, 1, 255, 256, 299):
        assert_same_item(stored[index], original[index])
    assert {len(stored[i]["boxes"]) for i in range(300)} == {1, 2, 3}  # ragged boxes come back ragged


def test_multiscale_shapes_keep_their_original_size_and_crop(tmp_path):
    config = ShapesConfig(size=(32, 32), original_scale=(0.25, 2.0), num_images=20)
    items = [ShapesDataset("val", config)[i] for i in range(20)]
    assert {item["original_size"] for item in items} != {(32, 32)}
    path = save_columns(merge([columns_of(items[:7]), columns_of(items[7:])]), tmp_path / "multiscale.safetensors",
                        "multiscale shapes")
    stored = MaterialisedDataset(path)
    for index, item in enumerate(items):
        assert_same_item(stored[index], item)


@pytest.mark.skipif(not emoji.is_available(), reason="needs the emoji download (ldm-lab data fetch emoji)")
def test_emoji_items_are_identical(cache):
    path = materialise("emoji", "val", (64, 64), num_items=40, workers=1, progress=False)
    stored, original = MaterialisedDataset(path), build_dataset("emoji", "val", (64, 64))
    for index in range(0, 40, 7):
        assert_same_item(stored[index], original[index])


@pytest.mark.skipif(not fashion_mnist.is_available(), reason="needs Fashion-MNIST (ldm-lab data fetch)")
def test_resized_fashion_mnist_is_stored_raw_and_identical(cache):
    # At 32x32 the images are interpolated: off the 8-bit grid, so they must be stored as floats.
    path = materialise("fashion_mnist", "val", (32, 32), num_items=50, workers=1, progress=False)
    stored, original = MaterialisedDataset(path), build_dataset("fashion_mnist", "val", (32, 32))
    assert stored.fields["image"][1] is Encoding.RAW
    for index in (0, 17, 49):
        assert_same_item(stored[index], original[index])


def test_chunks_stored_differently_merge_losslessly():
    on_grid = [{"x": torch.tensor([-1.0, 1.0]), "n": 3}]
    off_grid = [{"x": torch.tensor([0.123, -0.5]), "n": 700}]
    merged = merge([columns_of(on_grid), columns_of(off_grid)])
    assert merged["x"].encoding is Encoding.RAW and merged["n"].encoding is Encoding.RAW
    assert torch.equal(merged["x"].values, torch.tensor([-1.0, 1.0, 0.123, -0.5]))
    assert merged["n"].values.tolist() == [3, 700]


def test_training_reads_the_largest_cached_copy_else_the_dataset(cache):
    assert isinstance(training_dataset("shapes", (32, 32)), ShapesDataset)
    materialise("shapes", "train", (32, 32), num_items=10, workers=1, progress=False)
    larger = materialise("shapes", "train", (32, 32), num_items=20, workers=1, progress=False)
    assert find_materialised("shapes", "train", (32, 32)) == larger
    assert len(training_dataset("shapes", (32, 32))) == 20


def test_a_changed_dataset_configuration_changes_the_fingerprint():
    plain = ShapesDataset("train", ShapesConfig(size=(32, 32)))
    multiscale = ShapesDataset("train", ShapesConfig(size=(32, 32), original_scale=(0.25, 2.0)))
    assert fingerprint(plain) != fingerprint(multiscale)
    assert fingerprint(plain) == fingerprint(ShapesDataset("train", ShapesConfig(size=(32, 32))))


def test_asking_for_more_items_than_the_dataset_has_says_how_many_there_are(cache):
    with pytest.raises(ValueError, match=r"1\.\.5000"):
        materialise("shapes", "val", (32, 32), num_items=10_000, progress=False)
