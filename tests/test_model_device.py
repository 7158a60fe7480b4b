"""One way to ask a model for its device: ldm_lab.device.model_device, used everywhere in the package."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

import ldm_lab
from ldm_lab.device import model_device

PACKAGE = Path(ldm_lab.__file__).parent


def test_the_device_of_the_weights_then_the_buffers_then_the_cpu():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    with torch.device("meta"):
        assert model_device(nn.Linear(2, 2)) == torch.device("meta")
    buffered = nn.Module()
    buffered.register_buffer("frequencies", torch.ones(3, device="meta"))
    assert model_device(buffered) == torch.device("meta")  # a parameter-free module that lives elsewhere
    assert model_device(nn.Identity()) == torch.device("cpu")


def test_no_module_asks_for_a_device_another_way():
    pattern = re.compile(r"parameters\(\)\)?\.device|\.parameters\(\)\)\.device|latent_scale\.device|p\.device for p in")
    # ldm_lab/quality/diffusers_arm.py asks diffusers' U-Net; that module is left as its owner wrote it.
    found = [f"{path.relative_to(PACKAGE)}:{number}"
             for path in sorted(PACKAGE.rglob("*.py")) if path.name != "device.py"
             and path.relative_to(PACKAGE).as_posix() != "quality/diffusers_arm.py"
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not found, f"use ldm_lab.device.model_device: {found}"
