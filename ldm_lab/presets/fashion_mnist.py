"""The Fashion-MNIST family: pixel-space DDPMs (unconditional, class-conditional) and a class-conditional latent
model whose class is one learned cross-attention token, as LDM's cin models (LDM §3.3). Their training targets:
``ldm_lab.tasks.targets.fashion_mnist``."""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.conditioning.base import Output
from ldm_lab.conditioning.class_embedder import ClassEmbedderConfig
from ldm_lab.conditioning.conditioner import ConditionerConfig, ConditionSpec
from ldm_lab.data import DATASETS
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.schedules import Schedule
from ldm_lab.nn.unet import UNetConfig
from ldm_lab.presets.base import Preset
from ldm_lab.presets.conditioners import ConditionerOf
from ldm_lab.presets.lab import LAB_ABLATION_AUTOENCODER, LAB_CONDITIONED_UNET

LAB_PIXEL_UNET = UNetConfig(in_channels=1, out_channels=1, model_channels=32, channel_mult=(1, 2, 2),
                            num_res_blocks=1, transformer_depth=(0, 1, 0), num_heads=None, head_dim=32,
                            context_dim=None)
LAB_FMNIST_AUTOENCODER = replace(LAB_ABLATION_AUTOENCODER, in_channels=1, out_channels=1, resolution=32)  # KL, f = 4

PRESETS: tuple[Preset, ...] = (
    Preset("lab-pixel", "unconditional pixel-space DDPM for 28x28 Fashion-MNIST (Ho et al. 2020 setup, tiny)",
           LAB_PIXEL_UNET, schedule=Schedule.LINEAR, resolution=(28, 28)),
    Preset("lab-class", "class-conditional Fashion-MNIST pixel model; label 10 is 'no class' for CFG",
           LAB_PIXEL_UNET.replace(num_classes=DATASETS["fashion_mnist"].num_classes + 1), schedule=Schedule.LINEAR,
           resolution=(28, 28)),
    Preset("lab-fmnist", "class-conditional latent model on 32x32 Fashion-MNIST (KL-f4, 1 channel): the class "
           "as one learned cross-attention token, as LDM's cin models", LAB_CONDITIONED_UNET.replace(
               context_description="one learned class token (LDM cin), 128"),
           LAB_FMNIST_AUTOENCODER, resolution=(32, 32), prediction=Prediction.V),
)


def class_token_conditioner(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """The class as one learned token the U-Net cross-attends to (LDM's cin models); lab-class reads its labels
    from its U-Net's class table instead (``from_networks``)."""
    classes = DATASETS["fashion_mnist"].num_classes
    embedder = ClassEmbedderConfig(classes, width=preset.unet.context_dim, output=Output.CONTEXT)
    return ConditionerConfig((ConditionSpec("class", ("label",), embedder, dropout),),
                             f"a class label (0..{classes - 1})")


CONDITIONERS: dict[str, ConditionerOf] = {"lab-fmnist": class_token_conditioner}
