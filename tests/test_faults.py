"""Faults on disk give one-line errors naming the file and the fix: wrong Inception weights, truncated
checkpoints (resume falls back to the older kept one), unreadable JSON, unwritable folders, truncated images."""

import hashlib

import pytest

from ldm_lab.metrics import features
from ldm_lab.metrics.features import FeatureSpaceUnavailable, inception_weights

FAKE_WEIGHTS = b"not the inception weights"


@pytest.fixture
def fake_inception(tmp_path, monkeypatch):
    path = tmp_path / features.INCEPTION_FILE
    path.write_bytes(FAKE_WEIGHTS)
    monkeypatch.setenv(features.INCEPTION_ENV, str(path))
    return path


def test_inception_weights_must_match_the_full_sha256_not_its_prefix(fake_inception, monkeypatch):
    actual = hashlib.sha256(FAKE_WEIGHTS).hexdigest()
    same_prefix = actual[:8] + "0" * 56  # what an 8-digit prefix check would have accepted
    monkeypatch.setattr(features, "INCEPTION_SHA256", same_prefix)
    with pytest.raises(FeatureSpaceUnavailable, match=f"its SHA-256 is {actual}, the release asset's is {same_prefix}"):
        inception_weights()
    monkeypatch.setattr(features, "INCEPTION_SHA256", actual)
    assert inception_weights() == fake_inception


def test_the_pinned_inception_hash_is_a_whole_sha256_of_the_named_file():
    assert len(features.INCEPTION_SHA256) == 64 and int(features.INCEPTION_SHA256, 16) >= 0
    assert features.INCEPTION_FILE.removesuffix(".pth").endswith(features.INCEPTION_SHA256[:8])
