"""The emoji text-to-image family: ``lab-emoji`` and its teacher ``lab-emoji-large``, Stable Diffusion 2's design in
miniature (a frozen CLIP text tower, cross-attention, v-prediction, scaled_linear) on 64x64 emoji. Its prompts are
read from its networks (``from_networks``); its training targets (on emoji, and on Shapes captions):
``ldm_lab.tasks.targets.emoji``."""

from __future__ import annotations

from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.presets.base import Preset
from ldm_lab.presets.conditioners import ConditionerOf
from ldm_lab.presets.lab import LAB_CLIP_TEXT, LAB_CONDITIONED_UNET, LAB_EMOJI_AUTOENCODER

LAB_PROMPT_UNET = LAB_CONDITIONED_UNET.replace(context_dim=LAB_CLIP_TEXT.width, context_description=(
    f"lab-clip's text tower, last layer after the final norm, {LAB_CLIP_TEXT.width}"))
# lab-emoji-large's U-Net, sized for training from data on a 2-core CPU (16.3 M parameters, about 23 training
# images/s on one thread at batch 16): SD's design in miniature -- 64/128/256 channels on 16/8/4 latent pixels,
# one ResBlock per level, cross-attention to the prompt at 8x8, 4x4 and in the middle. Bigger U-Nets learn more per
# image seen; on this CPU the step time grows more slowly than the width, so at a fixed budget this width beats
# the 1.2 M U-Nets (the recipe ablation, notebook 00).
LAB_EMOJI_LARGE_UNET = LAB_PROMPT_UNET.replace(model_channels=64, channel_mult=(1, 2, 4))
# lab-emoji's U-Net: the same with 128 channels at 4x4 (6.6 M parameters, a 13 MiB fp16 file instead of 31 MiB;
# its FLOPs are three quarters of the large one's, as each level of the large one costs about the same), distilled
# from lab-emoji-large (ldm_lab.tasks.distillation).
LAB_EMOJI_UNET = LAB_EMOJI_LARGE_UNET.replace(channel_mult=(1, 2, 2))
_DESCRIPTION = ("small text-to-image latent model on 64x64 emoji: KL-f4 autoencoder, frozen lab-clip text (SD 2's "
                "design: a frozen CLIP text tower, cross-attention, v-prediction, scaled_linear)")

PRESETS: tuple[Preset, ...] = (
    Preset("lab-emoji", _DESCRIPTION + "; a 6.6 M U-Net distilled from lab-emoji-large, then fine-tuned", LAB_EMOJI_UNET,
           LAB_EMOJI_AUTOENCODER, {"text": LAB_CLIP_TEXT}, text_weights="lab-clip", resolution=(64, 64),
           prediction=Prediction.V),
    Preset("lab-emoji-large", _DESCRIPTION + "; a 16.3 M U-Net, trained from data", LAB_EMOJI_LARGE_UNET,
           LAB_EMOJI_AUTOENCODER, {"text": LAB_CLIP_TEXT}, text_weights="lab-clip", resolution=(64, 64),
           prediction=Prediction.V),
)

CONDITIONERS: dict[str, ConditionerOf] = {}  # a prompt, read from the networks
