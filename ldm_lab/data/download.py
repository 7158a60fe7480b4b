"""Checksums and the error a missing dataset raises."""

from __future__ import annotations

import hashlib
from pathlib import Path


class DatasetMissingError(FileNotFoundError):
    """A dataset is not on this machine. The message says which command gets it."""


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def has_checksum(path: Path, sha256: str) -> bool:
    """True when ``path`` exists and its SHA-256 is ``sha256``."""
    return path.is_file() and sha256_of(path) == sha256
