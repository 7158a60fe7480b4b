"""Checkpoints: a folder per step, written atomically, holding nothing that needs unpickling.

    run_dir/checkpoints/step_000500/
        model.safetensors          the raw weights (load with ``load_weights`` or ``safetensors.torch.load_model``)
        ema.safetensors            the EMA weights, when EMA is on
        trainer_state.safetensors  optimizer moments and every process's RNG states
        trainer_state.json         step, data position, elapsed time, optimizer hyper-parameters, config

A checkpoint is assembled in a hidden temporary folder beside its final place, every file is fsynced, and the
folder is renamed into place with ``os.replace`` (atomic on POSIX). A crash at any moment leaves either the
complete new checkpoint or none, and the previous one untouched (plus, after a kill, a ``.tmp-step_*`` folder,
removed when the run is next locked).

One process at a time trains in a run directory: :func:`run_dir_lock` holds an exclusive ``fcntl.flock`` on
``run_dir/.lock`` (released by the kernel when the process dies, so a killed run never leaves a stale lock).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from ldm_lab.device import model_device
from ldm_lab.files import TEMPORARY_PREFIX, file_lock
from ldm_lab.json_files import read_json

CHECKPOINTS = "checkpoints"
LOCK_FILE = ".lock"          # run_dir/.lock: flocked by the process training in the run directory
MODEL_FILE, EMA_FILE = "model.safetensors", "ema.safetensors"
STATE_TENSORS_FILE, STATE_JSON_FILE = "trainer_state.safetensors", "trainer_state.json"


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model it is being loaded into."""


class RunDirLockedError(RuntimeError):
    """Another process is training in this run directory."""


class CheckpointDamagedError(RuntimeError):
    """A checkpoint file is truncated, corrupt or missing (a full disk, a copy cut short)."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a read-only folder); the previous one is untouched."""


# ---------------------------------------------------------------------------------------------------- locks
_HELD_RUN_DIRS: set[Path] = set()  # run directories this process holds the lock of


def _is_main_process() -> bool:
    """Rank 0 (or no launcher): ``torchrun`` and ``accelerate launch`` set ``RANK`` for every process they start."""
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Train in ``run_dir`` alone: flock ``run_dir/.lock`` or raise :class:`RunDirLockedError` at once.

    Re-entrant within a process (the CLI locks before writing ``run.json``, the trainer again), and taken by the
    main process of a multi-process run only. Once locked, every ``.tmp-*`` folder under ``checkpoints/`` is the
    leftover of a killed writer and is removed."""
    key = Path(run_dir).resolve()
    if not _is_main_process() or key in _HELD_RUN_DIRS:  # rank 0 holds it for the job / we hold it already
        yield
        return
    try:
        with file_lock(key / LOCK_FILE, blocking=False):
            _HELD_RUN_DIRS.add(key)
            try:
                remove_orphaned_temporaries(key)
                yield
            finally:
                _HELD_RUN_DIRS.discard(key)
    except BlockingIOError:
        raise RunDirLockedError(
            f"another process is training in {key} (it holds {key / LOCK_FILE}). Wait for it to finish, stop it, "
            "or choose another --out folder; two runs in one folder would overwrite each other's checkpoints, "
            "config and metrics.") from None


def remove_orphaned_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete the half-written checkpoint folders a killed process left (call only while holding the run's
    lock: then no live writer owns them); return what was removed."""
    folder = Path(run_dir) / CHECKPOINTS
    orphans = sorted(folder.glob(f"{TEMPORARY_PREFIX}*")) if folder.is_dir() else []
    for orphan in orphans:
        if orphan.is_dir():
            shutil.rmtree(orphan, ignore_errors=True)
        else:
            orphan.unlink(missing_ok=True)
    return orphans


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives."""
    return Path(run_dir) / CHECKPOINTS / f"step_{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as (step, folder), oldest first. Temporary folders are ignored."""
    folder = Path(run_dir) / CHECKPOINTS
    found = [(int(p.name.removeprefix("step_")), p) for p in folder.glob("step_*")
             if p.is_dir() and p.name.removeprefix("step_").isdigit()] if folder.is_dir() else []
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint folder of a run whose files are all readable, or None when it has none.

    A damaged newer checkpoint (a file truncated by a full disk, or a copy cut short) is skipped with a warning, so
    resuming falls back to the previous kept one; if every checkpoint is damaged, :class:`CheckpointDamagedError`
    (never a silent fresh start over them)."""
    damaged = []
    for _, folder in reversed(list_checkpoints(run_dir)):
        problem = checkpoint_problem(folder)
        if problem is None:
            if damaged:
                warnings.warn(f"skipping damaged checkpoint(s) of {run_dir} ({'; '.join(damaged)}); using the "
                              f"older {folder.name}", stacklevel=2)
            return folder
        damaged.append(f"{folder.name}: {problem}")
    if damaged:
        raise CheckpointDamagedError(
            f"every checkpoint in {Path(run_dir) / CHECKPOINTS} is damaged ({'; '.join(damaged)}). Restore the run "
            "directory from a copy, or train again into a new --out folder.")
    return None


def checkpoint_problem(folder: Path) -> str | None:
    """Why checkpoint ``folder`` cannot be loaded (a file missing, truncated or not parsable), or None.
    Reads only the safetensors headers and the small JSON file, so it is cheap."""
    for name in (MODEL_FILE, STATE_TENSORS_FILE, STATE_JSON_FILE):
        if not (folder / name).is_file():
            return f"{name} is missing"
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except SafetensorError as error:  # safetensors checks the header covers the file exactly
            return f"{file.name} is truncated or corrupt ({error})"
    try:
        json.loads((folder / STATE_JSON_FILE).read_text(encoding="utf-8"))
    except ValueError as error:
        return f"{STATE_JSON_FILE} is not valid JSON ({error})"
    return None


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success fsync it and rename it to ``final``.

    On an exception the temporary folder is removed and ``final`` is untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{final.name}-", dir=final.parent))
    try:
        yield temporary
        for file in temporary.iterdir():
            _fsync(file)
        _fsync(temporary)
        if final.exists():  # the same step saved twice (e.g. interrupted right after a periodic checkpoint)
            shutil.rmtree(final)
        os.replace(temporary, final)
        _fsync(final.parent)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def write_checkpoint(run_dir: str | Path, step: int, *, model: nn.Module, ema_model: nn.Module | None,
                     state_tensors: dict[str, torch.Tensor], state_json: dict[str, Any]) -> Path:
    """Save one checkpoint atomically; return its folder."""
    final = checkpoint_path(run_dir, step)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(final) as folder:
            save_model(model, str(folder / MODEL_FILE))
            if ema_model is not None:
                save_model(ema_model, str(folder / EMA_FILE))
            save_file({k: v.detach().cpu().contiguous() for k, v in state_tensors.items()},
                      str(folder / STATE_TENSORS_FILE))
            (folder / STATE_JSON_FILE).write_text(json.dumps(state_json, indent=1), encoding="utf-8")
    except (SafetensorError, OSError) as error:
        raise CheckpointWriteError(
            f"could not write checkpoint {final} ({error}). Is the disk full (df -h {final.parent}) or the folder "
            "read-only? Fix that and continue with --resume; the previous checkpoint is untouched.") from error
    return final


def read_trainer_state(checkpoint: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the JSON half of a checkpoint's trainer state."""
    restore = "Delete this checkpoint folder to resume from the previous kept one."
    tensors = load_file_checked(checkpoint / STATE_TENSORS_FILE, restore)
    return tensors, read_json(checkpoint / STATE_JSON_FILE, restore)


def load_file_checked(file: Path, fix: str) -> dict[str, torch.Tensor]:
    """safetensors' ``load_file``, with an error naming ``file`` and ``fix`` when it is truncated or corrupt."""
    try:
        return load_file(str(file))
    except SafetensorError as error:
        raise CheckpointDamagedError(f"{file} is truncated or corrupt ({error}). {fix}") from None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints."""
    for _, folder in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


def check_weights_match(model: nn.Module, weights_file: Path) -> None:
    """Raise :class:`CheckpointMismatchError` naming the first key (in the model's order) that is missing,
    has another shape, or is unknown to the model."""
    try:
        with safe_open(str(weights_file), framework="pt") as handle:
            stored = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except SafetensorError as error:
        raise CheckpointDamagedError(
            f"{weights_file} is truncated or corrupt ({error}). Load an older checkpoint of the run (its other "
            f"{CHECKPOINTS}/step_* folder), or restore the file from a copy.") from None
    problem = _first_difference(model, stored)
    if problem:
        raise CheckpointMismatchError(
            f"{weights_file} does not fit this model: {problem}. The checkpoint was written for a different "
            "model configuration: use a new run directory, or build the model with the configuration the run "
            "was started with (its config.json records it).")


def _first_difference(model: nn.Module, stored: dict[str, tuple[int, ...]]) -> str | None:
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    for key, shape in expected.items():
        if key in stored and stored[key] != shape:
            return f"key {key!r} has shape {stored[key]} in the checkpoint but {shape} in the model"
        if key not in stored and not _alias_stored(model, key, stored):
            return f"key {key!r} of the model is missing from the checkpoint"
    unexpected = [key for key in stored if key not in expected]
    return f"key {unexpected[0]!r} is in the checkpoint but not in the model" if unexpected else None


def _alias_stored(model: nn.Module, key: str, stored: dict) -> bool:
    """Tied weights are saved once (safetensors' ``save_model``); ``key`` is fine if a twin was stored."""
    state = model.state_dict()
    pointer = state[key].data_ptr()
    return any(state[other].data_ptr() == pointer for other in stored if other in state)


def load_weights(model: nn.Module, checkpoint: str | Path, *, ema: bool = False) -> nn.Module:
    """Load a checkpoint's raw (or, with ``ema=True``, EMA) weights into ``model`` in place and return it.

    ``checkpoint`` is a checkpoint folder or a run directory (its newest checkpoint is used).
    """
    folder = Path(checkpoint)
    if not (folder / MODEL_FILE).exists():
        newest = latest_checkpoint(folder)
        if newest is None:
            raise FileNotFoundError(f"no checkpoint in {folder}: expected a checkpoint folder holding "
                                    f"{MODEL_FILE}, or a run directory with {CHECKPOINTS}/step_*.")
        folder = newest
    file = folder / (EMA_FILE if ema else MODEL_FILE)
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist: this run trained without EMA (ema_decay=0); "
                                "load the raw weights with ema=False.")
    load_checked(model, file)
    return model


def load_checked(model: nn.Module, weights_file: Path) -> None:
    """Load a safetensors weights file into ``model`` in place, after checking every key and shape."""
    check_weights_match(model, weights_file)
    load_model(model, str(weights_file), strict=True, device=str(model_device(model)))


def optimizer_state_to_safe(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``optimizer.<param id>.<name>``) and a JSON part."""
    tensors, scalars = {}, {}
    for param_id, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_state_from_safe(tensors: dict[str, torch.Tensor], json_part: dict[str, Any]) -> dict:
    """Inverse of :func:`optimizer_state_to_safe`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in json_part["scalars"].items():
        state.setdefault(int(param_id), {}).update(entries)
    groups = [{**group, "betas": tuple(group["betas"])} if "betas" in group else group
              for group in json_part["param_groups"]]
    return {"state": state, "param_groups": groups}
