"""The shipped evaluation models: checksums guard them, and their manifest scores reproduce."""

import shutil

import pytest
import torch

from ldm_lab.checkpoints import (MANIFEST_FILE, CheckpointError, ManifestEntry, load_checkpoint, read_manifest,
                                 save_checkpoint)
from ldm_lab.data import emoji, fashion_mnist
from ldm_lab.data.download import sha256_of
from ldm_lab.evaluation_models import classifier, lab_clip
from ldm_lab.paths import checkpoints_dir

SHIPPED = read_manifest()


def test_fp16_round_trip_and_manifest_entry(tmp_path):
    model = classifier.FashionClassifier()
    entry = ManifestEntry(file="tiny.safetensors", sha256="", size_bytes=0, command="python -m x", git_commit="abc",
                          data="none", metrics={"test_accuracy": 0.1}, config={}, training_seconds=1.0, device="cpu")
    saved = save_checkpoint("tiny", model.state_dict(), entry, folder=tmp_path)
    assert saved.sha256 == sha256_of(tmp_path / "tiny.safetensors") and saved.size_bytes > 0
    state, loaded = load_checkpoint("tiny", folder=tmp_path)
    assert loaded == saved
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            assert state[key].dtype == torch.float32
            torch.testing.assert_close(state[key], value.half().float())
        else:
            assert torch.equal(state[key], value)  # integer buffers (BatchNorm's step count) keep their type


@pytest.mark.skipif("fmnist-classifier" not in SHIPPED, reason="the classifier has not been trained and shipped")
def test_corrupt_checkpoint_is_refused_with_instructions(tmp_path):
    entry = SHIPPED["fmnist-classifier"]
    shutil.copy(checkpoints_dir() / MANIFEST_FILE, tmp_path / MANIFEST_FILE)
    shutil.copy(checkpoints_dir() / entry.file, tmp_path / entry.file)
    data = bytearray((tmp_path / entry.file).read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / entry.file).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch") as error:
        classifier.load_classifier(folder=tmp_path)
    assert "retrain" in str(error.value) and entry.command in str(error.value)
    (tmp_path / entry.file).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        classifier.load_classifier(folder=tmp_path)


def test_unlisted_checkpoint_names_what_is_listed(tmp_path):
    with pytest.raises(CheckpointError, match="unknown checkpoint 'lab-clip'"):
        lab_clip.load_lab_clip(folder=tmp_path)


@pytest.mark.skipif("fmnist-classifier" not in SHIPPED or not fashion_mnist.is_available(),
                    reason="needs the shipped classifier and Fashion-MNIST")
def test_classifier_accuracy_matches_the_manifest():
    images, labels = fashion_mnist.load_fashion_mnist("test")
    measured = classifier.accuracy(classifier.load_classifier(), images[:3000], labels[:3000])
    shipped = SHIPPED["fmnist-classifier"].metrics["test_accuracy"]
    assert shipped >= 0.9
    assert measured == pytest.approx(shipped, abs=0.02)  # a 3,000-image subset: standard error about 0.005


@pytest.mark.skipif("lab-clip" not in SHIPPED or not emoji.is_available(),
                    reason="needs the shipped lab-clip and the emoji dataset")
def test_lab_clip_emoji_retrieval_matches_the_manifest():
    from ldm_lab.evaluation_models.pairs import emoji_pairs
    from ldm_lab.evaluation_models.train_lab_clip import validation_scores

    measured = validation_scores(lab_clip.load_lab_clip(), "emoji_val", emoji_pairs("val"))
    for key, value in measured.items():  # the full val set; the manifest was measured before the fp16 cast
        assert value == pytest.approx(SHIPPED["lab-clip"].metrics[key], abs=0.02), key
