"""Bringing a ship back from a machine that can return only a few small files: pack whole files, most important
first, into at most N tar.gz parts of bounded size; unpack them here and install the checkpoints that came back.

    ldm-lab pack OUT_DIR --runs RUNS_DIR [--checkpoints DIR] [--priority NAME ...]   (there)
    ldm-lab unpack FOLDER                                                           (here)

A file that does not fit is left out (and listed); each part is a complete archive, so every part that came
back can be used. Installing copies each returned checkpoint whose SHA-256 matches its entry into
data/checkpoints and merges that entry into the manifest: a checkpoint that did not come back keeps its old
file and entry, so the manifest never lists a file it does not have.
"""

from __future__ import annotations

import dataclasses
import gzip
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ldm_lab.checkpoints import MANIFEST_FILE, read_manifest, update_manifest
from ldm_lab.data.download import sha256_of
from ldm_lab.paths import checkpoints_dir, runs_dir

MiB = 2**20
CHECKPOINTS, RUNS, EXTRAS = "checkpoints", "runs", "extras"  # folders inside the archives (extras: in runs)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the return channel takes."""

    max_files: int = 8
    max_file_bytes: int = 15 * MiB      # 16 MiB allowed; a margin for tar headers
    max_total_bytes: int = 62 * MiB     # 64 MiB allowed


def run_files(runs: Path) -> list[Path]:
    """The small files of a ship's runs: summary, logs, configs, metrics, and each run's newest sample grid."""
    small = [*runs.glob("*.json"), *runs.glob("*.log"), *runs.glob("*/*.json"), *runs.glob("*/metrics.jsonl")]
    grids = [sorted(run.glob("samples/*.png"))[-1:] for run in sorted(runs.iterdir()) if run.is_dir()]
    return sorted(small) + [grid for newest in grids for grid in newest]


def checkpoint_files(folder: Path, priority: Sequence[str]) -> list[Path]:
    """The manifest, then the lab models' (and distilled students') files that are there: ``priority`` names first, then the rest."""
    entries = {name: entry for name, entry in read_manifest(folder).items()
               if (entry.target or entry.teacher) is not None and (folder / entry.file).is_file()}
    order = [n for n in priority if n in entries] + sorted(n for n in entries if n not in priority)
    return [folder / MANIFEST_FILE] + [folder / entries[name].file for name in order]


def plan_parts(sizes: Sequence[int], limits: Limits = Limits()) -> tuple[list[list[int]], list[int]]:
    """First fit, in priority order: each file goes into the first part with room, or a new part while parts
    remain; one that fits nowhere (too big, over the total, no part left) is left out. Returns the file indices
    of each part and those left out."""
    parts: list[list[int]] = []
    used: list[int] = []
    left_out: list[int] = []
    for index, size in enumerate(sizes):
        room = [i for i, bytes_ in enumerate(used) if bytes_ + size <= limits.max_file_bytes]
        if size > limits.max_file_bytes or sum(used) + size > limits.max_total_bytes or (
                not room and len(parts) == limits.max_files):
            left_out.append(index)
            continue
        if not room:
            parts.append([])
            used.append(0)
            room = [len(parts) - 1]
        parts[room[0]].append(index)
        used[room[0]] += size
    return parts, left_out


def pack(files: Sequence[tuple[Path, str]], out: Path, limits: Limits = Limits()) -> tuple[list[Path], list[str]]:
    """Pack ``(path, name in archive)`` pairs, most important first, into ``out/ship-N.tar.gz``; returns the
    parts and the names left out. A file counts with its gzip size (what it adds to a part)."""
    sizes = [len(gzip.compress(path.read_bytes(), compresslevel=6)) + 1024 for path, _ in files]
    parts, left_out = plan_parts(sizes, limits)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, members in enumerate(parts):
        written.append(out / f"ship-{number}.tar.gz")
        with tarfile.open(written[-1], "w:gz") as archive:
            for index in members:
                archive.add(files[index][0], arcname=files[index][1])
    return written, [files[index][1] for index in left_out]


def pack_ship(out: Path, runs: Path, folder: Path, priority: Sequence[str] = (), extras: Sequence[Path] = (),
              limits: Limits = Limits()) -> tuple[list[Path], list[str]]:
    """A ship's run files and ``extras`` (e.g. a results table; small, first), then its manifest and checkpoints
    (``priority`` first), packed into ``out``."""
    files = [(path, f"{RUNS}/{path.relative_to(runs)}") for path in run_files(runs)]
    files += [(path, f"{RUNS}/{EXTRAS}/{path.name}") for path in extras if path.is_file()]
    files += [(path, f"{CHECKPOINTS}/{path.name}") for path in checkpoint_files(folder, priority)]
    return pack(files, out, limits)


def install(folder: Path, checkpoints: Path | None = None, runs: Path | None = None) -> tuple[list[str], list[str]]:
    """Unpack every ``ship-*.tar.gz`` in ``folder``; copy the run files (and extras) under ``runs`` (default
    build/runs/ship-returned) and each checkpoint whose SHA-256 matches its returned entry into ``checkpoints`` (default
    data/checkpoints), merging its entry into the manifest. Returns (installed, listed but not returned)."""
    checkpoints, runs = checkpoints or checkpoints_dir(), runs or runs_dir() / "ship-returned"
    with tempfile.TemporaryDirectory() as tmp:
        for part in sorted(folder.glob("ship-*.tar.gz")):
            with tarfile.open(part) as archive:
                archive.extractall(tmp, filter="data")
        returned = Path(tmp)
        for path in (returned / RUNS).rglob("*"):
            if path.is_file():
                target = runs / path.relative_to(returned / RUNS)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
        entries = read_manifest(returned / CHECKPOINTS)
        arrived = {name: entry for name, entry in entries.items()
                   if (returned / CHECKPOINTS / entry.file).is_file()
                   and sha256_of(returned / CHECKPOINTS / entry.file) == entry.sha256}
        for entry in arrived.values():
            (checkpoints / entry.file).write_bytes((returned / CHECKPOINTS / entry.file).read_bytes())
    update_manifest(arrived, checkpoints)  # under the manifest's lock: a ship writing entries now keeps them
    return sorted(arrived), sorted(set(entries) - set(arrived))
