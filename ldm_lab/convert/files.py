"""Reading checkpoint files: safetensors, or ``.ckpt`` / ``.pt`` / ``.bin`` without unpickling arbitrary objects."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.ckpt`` / ``.pt`` / ``.bin`` file (its ``state_dict``
    entry if it has one), loaded to CPU with ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        return load_file(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint.get("state_dict", checkpoint)
