"""The checkpoint store: small fp16 safetensors under ``data/checkpoints/``, each described by an entry of
``data/checkpoints/manifest.json`` (the command, git commit and data that produced it, its scores, its size and
its SHA-256). Loading checks the SHA-256, so a truncated or edited file is never used silently.

Two kinds of models live there: the evaluation models (``fmnist-classifier``, ``lab-clip``, trained by their own
entry points, :mod:`ldm_lab.evaluation_models`) and the lab models ``ldm-lab ship`` trains (named after their
training target; see :mod:`ldm_lab.shipping`), whose entries also say which target builds them and which first
stage they decode with.

A bottom-layer module: it imports only files, hashing and path helpers, so models, embedders and the shipping code
above can all read the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ldm_lab.data.download import sha256_of
from ldm_lab.files import atomic_write_text, file_lock
from ldm_lab.json_files import read_json
from ldm_lab.names import unknown_name_error
from ldm_lab.paths import checkpoints_dir

MANIFEST_FILE = "manifest.json"
MANIFEST_LOCK_FILE = "manifest.json.lock"  # flocked while a process reads, changes and rewrites the manifest


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters' bytes, in order: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for param in model.parameters():
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class CheckpointError(RuntimeError):
    """A shipped checkpoint is missing, unlisted, or fails its checksum."""


@dataclass(frozen=True)
class ManifestEntry:
    """One shipped checkpoint and how it came to be."""
    file: str                    # file name under data/checkpoints/
    sha256: str                  # hex digest of the file's bytes
    size_bytes: int
    command: str                 # the command that produced it (rerun it to retrain)
    git_commit: str              # `git rev-parse HEAD` it was trained from ("+dirty": tracked files had edits)
    data: str                    # what it was trained and measured on
    metrics: dict[str, float]    # its scores on held-out data (names say which split)
    config: dict                 # the model config's fields, to rebuild the module
    training_seconds: float      # wall time of the training run
    device: str                  # where it was trained, in words: "cpu (2 cores, 1 thread)", "cuda (...)"
    # Lab models only (left out of the JSON when unset, so the evaluation models' entries stay as they were):
    target: str | None = None    # the ldm_lab.tasks.targets.TARGETS name whose model the file holds
    steps: int | None = None     # optimizer steps the run reached
    first_stage: str | None = None          # latent models: the shipped name of their first stage, a file of its own
    first_stage_sha256: str | None = None   # ... and the SHA-256 it had when this model was trained on it
    fine_tuned_from: str | None = None      # the model its training started from, with that one's own lineage;
                                            # steps and training_seconds count the whole lineage
    teacher: str | None = None              # distilled few-step students (ldm_lab.distill): the shipped teacher
                                            # whose first stage and text tower they share (the file: the U-Net)
    teacher_sha256: str | None = None       # ... and the SHA-256 it had when the student was distilled from it


def entry_fields(entry: ManifestEntry) -> dict:
    """The entry as JSON fields, without the optional fields that are unset."""
    optional = {field.name for field in dataclasses.fields(ManifestEntry) if field.default is None}
    return {key: value for key, value in dataclasses.asdict(entry).items() if key not in optional or value is not None}


def config_from_fields(config_class: type, fields: dict):
    """Rebuild a frozen config dataclass from its JSON fields (JSON has lists where the config has tuples)."""
    return config_class(**{key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()})


def read_manifest(folder: Path | None = None) -> dict[str, ManifestEntry]:
    """Checkpoint name -> its entry (empty when no manifest exists yet)."""
    path = (folder or checkpoints_dir()) / MANIFEST_FILE
    if not path.is_file():
        return {}
    entries = read_json(path, "Restore it with `git checkout data/checkpoints/manifest.json` (or from your copy).")
    return {name: ManifestEntry(**fields) for name, fields in entries.items()}


def save_checkpoint(name: str, state_dict: dict[str, torch.Tensor], entry: ManifestEntry,
                    folder: Path | None = None) -> ManifestEntry:
    """Write ``state_dict`` as fp16 safetensors (floating tensors only; integer buffers keep their type) and
    record ``entry`` under ``name`` with the file's real size and SHA-256; returns the completed entry."""
    folder = folder or checkpoints_dir()
    path = folder / entry.file
    half = {key: (value.half() if value.is_floating_point() else value).detach().cpu().contiguous()
            for key, value in state_dict.items()}
    try:
        save_file(half, str(path), metadata={"name": name, "git_commit": entry.git_commit})
    except SafetensorError as error:
        raise CheckpointError(f"could not write {path} ({error}). Is the disk full (df -h {folder}) or the folder "
                              "read-only? Fix that and ship again.") from error
    path.chmod(0o644)  # a shipped file: readable by everyone who checks the repository out
    entry = dataclasses.replace(entry, sha256=sha256_of(path), size_bytes=path.stat().st_size)
    update_manifest({name: entry}, folder)
    return entry


def update_manifest(entries: dict[str, ManifestEntry], folder: Path) -> None:
    """Add (or replace) ``entries`` in ``folder``'s manifest, keeping every other entry. Read, merge and write
    happen under an exclusive ``fcntl.flock`` on ``manifest.json.lock``, so processes shipping at the same time
    queue up instead of dropping each other's entries."""
    with file_lock(folder / MANIFEST_LOCK_FILE):
        write_manifest({**read_manifest(folder), **entries}, folder)


def write_manifest(entries: dict[str, ManifestEntry], folder: Path) -> None:
    """Replace ``folder``'s manifest atomically (a killed process leaves the old one or the new one), through a
    temporary file of its own. To change some entries while others may be shipping, use :func:`update_manifest`."""
    fields = {name: entry_fields(entry) for name, entry in entries.items()}
    atomic_write_text(folder / MANIFEST_FILE, json.dumps(fields, indent=2, sort_keys=True) + "\n")


def verified_file(name: str, folder: Path | None = None) -> tuple[Path, ManifestEntry]:
    """The path of shipped checkpoint ``name`` after checking its SHA-256 against the manifest."""
    folder = folder or checkpoints_dir()
    manifest = read_manifest(folder)
    if name not in manifest:
        raise CheckpointError(str(unknown_name_error(
            "checkpoint", name, manifest, listing=f"{', '.join(manifest) or 'none'} (in {folder / MANIFEST_FILE})",
            advice=f"Lab models: train it with `ldm-lab ship {name}`; evaluation models: with their entry point (see "
                   "ldm_lab/evaluation_models/__init__.py); or restore the manifest (git checkout data/checkpoints).")))
    entry = manifest[name]
    path = folder / entry.file
    retrain = f"re-fetch data/checkpoints/ from the repository (git checkout) or retrain with `{entry.command}`"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {name!r} is listed in the manifest but {path} is missing; {retrain}")
    if (actual := sha256_of(path)) != entry.sha256:
        raise CheckpointError(
            f"checksum mismatch for {path}: SHA-256 is {actual}, the manifest expects {entry.sha256}. The file is "
            f"corrupt or was changed after training; {retrain}")
    return path, entry


def load_checkpoint(name: str, folder: Path | None = None) -> tuple[dict[str, torch.Tensor], ManifestEntry]:
    """The verified state dict of ``name``, floating tensors cast back to fp32, and its manifest entry."""
    path, entry = verified_file(name, folder)
    state = {key: (value.float() if value.is_floating_point() else value) for key, value in load_file(path).items()}
    return state, entry
