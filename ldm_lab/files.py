"""Writing files that other processes may be writing too: an exclusive lock, and atomic replacement.

A bottom-layer module (standard library only): the trainer, the checkpoint store and the shipping code share it.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_PREFIX = ".tmp-"   # a file or folder being written: <folder>/.tmp-<name>-...


@contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if missing) for the ``with`` block. Blocking: wait
    for the holder; else raise ``BlockingIOError`` at once. The kernel drops the lock if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file through a uniquely named temporary file in the same folder (two writers never
    share one), fsync it and ``os.replace`` it onto ``path``: readers see the old text or the new, never a mix."""
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        # O_EXCL: never another writer's file; mode 0o666 less the umask, as a plain open() would give.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A uniquely named temporary path in ``path``'s folder (ending in ``path``'s name) for the ``with`` block to
    write with any library that takes a file name; when the block succeeds it is fsynced and ``os.replace``d onto
    ``path``, when it fails it is removed. Readers see the old file or the new one, never a part."""
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
