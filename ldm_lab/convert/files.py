"""Reading checkpoint files: safetensors, or ``.ckpt`` / ``.pt`` / ``.bin`` without unpickling arbitrary objects."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file (fp32, fp16 or bf16: see :func:`check_dtypes`), or of a ``.ckpt`` / ``.pt`` / ``.bin`` file (its ``state_dict``
    entry if it has one), loaded to CPU with ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        return check_dtypes(load_file(path), path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint.get("state_dict", checkpoint)


SUPPORTED_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def check_dtypes(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """``state`` unchanged if its floating tensors are fp32, fp16 or bf16; else a ValueError naming the file, a
    key and the one-line fix (fp64 weights would turn the model's activations fp64 and fail far from here)."""
    odd = [(key, value.dtype) for key, value in state.items()
           if isinstance(value, Tensor) and value.is_floating_point() and value.dtype not in SUPPORTED_FLOATS]
    if odd:
        key, dtype = odd[0]
        raise ValueError(
            f"{path} holds {len(odd)} {str(dtype).removeprefix('torch.')} tensor(s) (e.g. {key!r}); ldm-lab loads "
            "fp32, fp16 or bf16 weights. Save a float32 copy: state = {k: v.float() if v.is_floating_point() else v "
            "for k, v in state.items()} then safetensors.torch.save_file(state, path).")
    return state
