"""Weights in and out of ldm_lab: original LDM/SGM checkpoints and diffusers models.

    from_diffusers(diffusers_module) -> the ldm_lab module with the same weights (U-Net or KL autoencoder)
    to_diffusers(ldm_lab_module)     -> the diffusers module with the same weights

The per-model functions live in ``convert.unet`` and ``convert.autoencoder``; diffusers is imported only when
one of these is called.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ldm_lab.convert.autoencoder import autoencoder_from_diffusers, autoencoder_to_diffusers
from ldm_lab.convert.files import read_state_dict
from ldm_lab.convert.unet import (load_diffusers_unet, load_original_unet, original_state_dict, unet_from_diffusers,
                                  unet_to_diffusers)
from ldm_lab.nn.autoencoder import Autoencoder
from ldm_lab.nn.unet import UNet


def from_diffusers(module: Any) -> nn.Module:
    """Our equivalent of a diffusers ``UNet2DConditionModel`` or ``AutoencoderKL``, with its weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if isinstance(module, UNet2DConditionModel):
        return unet_from_diffusers(module)
    if isinstance(module, AutoencoderKL):
        return autoencoder_from_diffusers(module)
    raise TypeError(f"from_diffusers converts UNet2DConditionModel and AutoencoderKL, not {type(module).__name__}")


def to_diffusers(module: nn.Module, **options: Any) -> Any:
    """The diffusers equivalent of our ``UNet`` or KL ``Autoencoder``, with its weights. ``options`` go to
    the converter (for a U-Net with a vector condition: ``micro_conditioning_dim``, SDXL's 256)."""
    if isinstance(module, UNet):
        return unet_to_diffusers(module, **options)
    if isinstance(module, Autoencoder):
        return autoencoder_to_diffusers(module, **options)
    raise TypeError(f"to_diffusers converts ldm_lab's UNet and Autoencoder, not {type(module).__name__}")


__all__ = ["from_diffusers", "to_diffusers", "load_original_unet", "load_diffusers_unet", "original_state_dict",
           "read_state_dict"]
