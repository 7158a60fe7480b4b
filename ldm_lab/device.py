"""Device choice: CUDA, then Apple MPS, then CPU. Nothing in ldm_lab hard-codes a device."""

from __future__ import annotations

import itertools
import os

import torch
from torch import nn


def default_device() -> torch.device:
    """The best available accelerator: ``cuda``, then ``mps``, then ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` picks :func:`default_device`; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        return default_device()
    return torch.device(device)


def model_device(model: nn.Module) -> torch.device:
    """Where a module's weights live: the device of its first parameter (or buffer); CPU for a module with none.
    The one way ldm_lab asks a model for its device."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """Where a run trained, in words: ``"cpu (2 cores, 1 thread)"`` or the GPU's name."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    cores, threads = os.cpu_count(), torch.get_num_threads()
    return f"{device.type} ({cores} cores, {threads} thread{'s' * (threads > 1)})"
