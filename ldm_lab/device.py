"""Device choice: CUDA, then Apple MPS, then CPU. Nothing in ldm_lab hard-codes a device."""

from __future__ import annotations

import torch


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
