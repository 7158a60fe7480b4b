"""Every random-number generator a training step may touch, captured as tensors and restored.

Tensors (not pickles) so that the state fits in safetensors, and so that each process's state can be
gathered to the main process with one collective per generator.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def capture_rng_state() -> dict[str, torch.Tensor]:
    """torch (CPU; the current CUDA or MPS device), numpy and Python ``random`` states, as CPU tensors."""
    version, mt_words, gauss_next = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_cached_gauss = np.random.get_state()
    state = {
        "torch_cpu": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos_has_gauss": torch.tensor([np_pos, np_has_gauss], dtype=torch.int64),
        "numpy_cached_gauss": torch.tensor([np_cached_gauss], dtype=torch.float64),
        "python_words": torch.tensor([version, *mt_words], dtype=torch.int64),
        "python_gauss": torch.tensor([gauss_next is not None, gauss_next or 0.0], dtype=torch.float64),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state()
    if torch.backends.mps.is_available():
        state["torch_mps"] = torch.mps.get_rng_state()
    return state


def restore_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["torch_cuda"])
    if "torch_mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["torch_mps"])
    pos, has_gauss = state["numpy_pos_has_gauss"].tolist()
    np_keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", np_keys, pos, has_gauss, state["numpy_cached_gauss"].item()))
    version, *mt_words = state["python_words"].tolist()
    has_gauss_next, gauss_next = state["python_gauss"].tolist()
    random.setstate((version, tuple(mt_words), gauss_next if has_gauss_next else None))
