"""The one place ldm-lab touches accelerate's private state.

accelerate keeps one process-wide ``AcceleratorState`` and refuses a second ``Accelerator`` with other settings
(another mixed precision, another device). A notebook may train a classifier in fp32 and then a U-Net in bf16 in
one kernel, so outside a distributed launch the stale state is dropped before each ``Accelerator`` is built. This
uses ``AcceleratorState._shared_state`` and ``AcceleratorState._reset_state`` (accelerate 0.33 - 1.x, which is why
pyproject.toml pins accelerate below 2); if an upgrade removes them, this module is what to fix.
"""

from __future__ import annotations

import torch
from accelerate.state import AcceleratorState


def forget_single_process_state(mixed_precision: str, cpu: bool) -> None:
    """Drop accelerate's process-wide state if it was made for another mixed precision (or, for a CPU run, another
    device); leave it alone in a distributed launch, where the launcher owns it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    state = AcceleratorState._shared_state
    if not state:
        return
    device = state.get("device")
    other_device = cpu and device is not None and device.type != "cpu"
    if state.get("_mixed_precision") != mixed_precision or other_device:
        AcceleratorState._reset_state(reset_partial_state=True)
