"""Named models: the full-size Stable Diffusion family, LDM's first stages, and small "lab" models to train here.

A preset says which networks a model has (U-Net, autoencoder, text encoders) and how it was trained (what the
U-Net predicts, the noise schedule, the latent scale); its conditioner says which conditions feed the U-Net.
``build_preset(name, device="meta")`` builds the networks without allocating memory, which is how
``ldm-lab params`` counts parameters.

    >>> get_preset("sdxl-base").unet.context_dim
    2048

Each model family has one module here holding its presets and conditioners (its training targets are in the
module of the same name in ``ldm_lab.tasks.targets``):

* ``reference``: the papers' full-size models (SD 1.5, 2.1, SDXL base, refiner, Turbo; LDM's first stages);
* ``fashion_mnist``: lab-pixel, lab-class, lab-fmnist;
* ``emoji``: lab-emoji, text-to-image;
* ``shapes``: lab-sdxl (and its refiner), lab-layout, lab-seg;
* ``compression``: the compression ablation's first stages lab-{kl,vq}-f{1..32} and LDM-f, lab-ldm-{1..32};
* ``sd_versions``: SD 1.x, 2.x, SDXL and 1.5-inpainting in miniature on emoji (notebook 05).

What several lab families share is in ``lab``; what every conditioner builds on, in ``conditioners``.
"""

from __future__ import annotations

import torch
from torch import nn

from ldm_lab.conditioning.conditioner import ConditionerConfig
from ldm_lab.device import resolve_device
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.schedules import Schedule
from ldm_lab.names import unknown_name_error
from ldm_lab.nn.autoencoder import Autoencoder
from ldm_lab.nn.text import TextEncoder
from ldm_lab.nn.unet import UNet
from ldm_lab.presets import compression, emoji, fashion_mnist, reference, sd_versions, shapes
from ldm_lab.presets.base import Preset
from ldm_lab.presets.conditioners import ConditionerOf, from_networks

FAMILIES = (reference, fashion_mnist, emoji, shapes, compression, sd_versions)
PRESETS: dict[str, Preset] = {preset.name: preset for family in FAMILIES for preset in family.PRESETS}
CONDITIONERS: dict[str, ConditionerOf] = {name: conditioner for family in FAMILIES
                                          for name, conditioner in family.CONDITIONERS.items()}


def get_preset(name: str | Preset) -> Preset:
    """The preset called ``name``; an unknown name raises an error listing the valid ones. A ``Preset`` itself is
    returned as it is (a named preset changed with ``dataclasses.replace``, as the recipe ablation's variants)."""
    if isinstance(name, Preset):
        return name
    if name in PRESETS:
        return PRESETS[name]
    raise unknown_name_error("preset", name, PRESETS)


def conditioner_config(preset: Preset, dropout: float = 0.1, train_text: bool = True) -> ConditionerConfig:
    """The conditions of ``preset``, each dropped with probability ``dropout`` in training (size and crop never);
    ``train_text``: the text towers train with the U-Net (LDM §4.3) or stay frozen (SD). Its family's conditioner,
    else what its networks imply (``from_networks``).

        conditioner_config(get_preset("sdxl-base")).widths()  # {CONTEXT: 2048, VECTOR: 2816}
    """
    if preset.unet is None:
        raise ValueError(f"preset {preset.name!r} has no U-Net, so nothing to condition: it is a first stage alone.")
    return CONDITIONERS.get(preset.name, from_networks)(preset, dropout, train_text)


def build_preset(name: str | Preset, device: str | torch.device | None = None) -> nn.ModuleDict:
    """The preset's networks by component name (``unet``, ``vae`` or ``first_stage``, each text encoder),
    built on ``device`` (default: the best available; ``"meta"`` allocates nothing, for counting)."""
    preset = get_preset(name) if isinstance(name, str) else name
    modules = nn.ModuleDict()
    with torch.device(resolve_device(device)):
        if preset.unet is not None:
            modules["unet"] = UNet(preset.unet)
        if preset.autoencoder is not None:
            modules[preset.autoencoder_name] = Autoencoder(preset.autoencoder)
        for encoder_name, config in preset.text_encoders.items():
            modules[encoder_name] = TextEncoder(config)
    return modules


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (shared ones once)."""
    return sum(p.numel() for p in module.parameters())


def parameter_counts(name: str | Preset) -> dict[str, int]:
    """Parameters per component and ``total``, counted on the meta device (no memory, about a second)."""
    modules = build_preset(name, device="meta")
    counts = {component: count_parameters(module) for component, module in modules.items()}
    return {**counts, "total": sum(counts.values())}


__all__ = ["CONDITIONERS", "FAMILIES", "PRESETS", "Prediction", "Preset", "Schedule", "build_preset",
           "conditioner_config", "count_parameters", "get_preset", "parameter_counts"]
