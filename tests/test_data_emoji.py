import shutil
from collections import Counter

import numpy as np
import pytest

from ldm_lab.data import batching, build_dataset, emoji
from ldm_lab.data.download import DatasetMissingError, has_checksum

pytestmark = pytest.mark.skipif(not emoji.is_available(),
                                reason="emoji data not fetched: run `ldm-lab data fetch emoji` (make test does)")


def test_all_3786_images_with_captions_and_10_categories():
    records = emoji.load_records()
    assert len(records) == emoji.NUM_IMAGES == 3786
    assert all(r.caption.strip() for r in records)
    assert Counter(len(r.skin_tones) > 0 for r in records) == {False: 1911, True: 1875}
    assert {r.category for r in records} == set(emoji.CATEGORIES) and len(emoji.CATEGORIES) == 10
    assert len({r.key for r in records}) == len(records)


def test_captions_spell_out_skin_tones():
    captions = {r.key: r.caption for r in emoji.load_records()}
    assert captions["1F600"] == "grinning face"
    assert captions["1F44B-1F3FD"].endswith(": medium skin tone")
    # a two-person emoji with two tones names both; with one tone twice, names it once
    two = [r for r in emoji.load_records() if len(r.skin_tones) == 2]
    assert two and all(r.caption.endswith(f"{r.skin_tones[0]}, {r.skin_tones[1]}") for r in two)


def test_aliases_are_the_short_names_as_words_with_the_tones_and_travel_in_items():
    records = {r.caption: r for r in emoji.load_records()}
    assert records["slice of pizza"].aliases == ("pizza",)
    assert records["automobile"].aliases == ("car", "red car")
    assert records["rocket"].aliases == ()                       # its short name is its caption
    assert records["portugal flag"].aliases == ()                # flags' short names are region codes
    waving = records["waving hand sign: medium skin tone"]
    assert waving.aliases == ("wave: medium skin tone",)
    assert not any(batching.ALIAS_SEPARATOR.strip() in name for r in records.values() for name in (r.caption, *r.aliases))
    data = emoji.EmojiDataset("train")
    index = next(i for i, r in enumerate(data.records) if r.caption == "automobile")
    assert batching.split_aliases(data[index]["aliases"]) == ["car", "red car"]


def test_split_is_by_base_emoji_and_deterministic():
    train, val = emoji.split_records("train"), emoji.split_records("val")
    assert len(train) + len(val) == 3786
    assert {r.base_key for r in train}.isdisjoint({r.base_key for r in val})  # variants never straddle
    assert {"train": len(train), "val": len(val)} == emoji.SPLIT_SIZES
    assert 0.07 < len(val) / 3786 < 0.13
    with pytest.raises(ValueError, match="train"):
        emoji.split_records("test")


def test_emoji_base_keeps_one_item_per_emoji_without_skin_tones():
    for split in ("train", "val"):
        every, base = build_dataset("emoji", split, (64, 64)), build_dataset("emoji_base", split, (64, 64))
        assert len(base) == len({r.base_key for r in every.records}) < len(every)
        assert not any(r.skin_tones for r in base.records)
        assert [r.key for r in base.records] == [r.base_key for r in base.records]


def test_dataset_items_any_resolution_and_background():
    data = emoji.EmojiDataset("val", resolution=32, background=(0, 255, 0))
    item = data[0]
    assert item["image"].shape == (3, 32, 32)
    assert -1 <= item["image"].min() and item["image"].max() <= 1
    assert isinstance(item["caption"], str) and 0 <= item["label"] < 10
    rgba = emoji.rgba_images()[data.records[0].key]
    transparent = rgba[..., 3] == 0
    full = np.asarray(emoji.EmojiDataset("val", resolution=64, background=(0, 255, 0)).image(0))
    assert transparent.any() and (full[transparent] == (0, 255, 0)).all()
    assert emoji.EmojiDataset("train", resolution=128)[5]["image"].shape == (3, 128, 128)


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LAB_DATA", str(tmp_path))
    with pytest.raises(DatasetMissingError, match="ldm-lab data fetch emoji"):
        emoji.EmojiDataset("train")


def test_corrupt_tarball_is_detected_and_refetched(tmp_path, monkeypatch):
    good = emoji.cache_dir() / "emoji" / emoji.TARBALL
    if not good.is_file():
        pytest.skip("the cached tarball was removed")
    monkeypatch.setenv("LDM_LAB_DATA", str(tmp_path / "cache"))
    (tmp_path / "cache" / "emoji").mkdir(parents=True)
    (tmp_path / "cache" / "emoji" / emoji.TARBALL).write_bytes(b"not a tarball")
    bad_copy = tmp_path / "bad.tgz"
    bad_copy.write_bytes(b"also corrupt")
    monkeypatch.setenv(emoji.TARBALL_ENV, str(bad_copy))
    with pytest.raises(DatasetMissingError, match="SHA-256"):
        emoji.fetch()
    shutil.copyfile(good, tmp_path / "good.tgz")
    monkeypatch.setenv(emoji.TARBALL_ENV, str(tmp_path / "good.tgz"))
    folder = emoji.fetch()  # the corrupt cached copy is replaced, verified, unpacked
    assert len(list((folder / emoji.IMAGE_DIR).glob("*.png"))) == 3786
    assert has_checksum(tmp_path / "cache" / "emoji" / emoji.TARBALL, emoji.TARBALL_SHA256)
