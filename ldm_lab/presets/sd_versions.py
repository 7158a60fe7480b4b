"""The Stable Diffusion versions in miniature (notebook 05): what changed from SD 1.x to 2.x to SDXL, and the 1.5
inpainting model, each as a small text-to-image model on 64x64 emoji. Their training targets (matched compute,
the v1.x lineage, the inpainting fine-tune): ``ldm_lab.tasks.targets.sd_versions``.

Every model decodes with lab-emoji's first stage (lab-autoencoder: KL-f4, 16x16x4 latents) and reads the one
pretrained CLIP the lab has, lab-clip, frozen. Its U-Net is the 1.2 M conditioned lab U-Net; what differs is what
differed between the versions:

* ``lab-sd1-like`` (SD 1.x): the text tower's last layer after its final norm; a fixed number of heads per level;
  1x1-conv token projections; predicts eps;
* ``lab-sd2-like`` (SD 2.x): the penultimate layer, then the final norm; a fixed head width; Linear projections;
  predicts v (SD 2.x-768). SD 2 also swapped in a larger tower (OpenCLIP ViT-H for CLIP ViT-L); the lab has one
  pretrained CLIP, so that change is not reproduced; ``lab-sd2-like-ztsnr`` is it with zero terminal SNR (what
  SD 2's v-prediction makes possible, Lin et al. 2023), to show the brightness the scaled_linear schedule holds back;
* ``lab-sdxl-like`` (SDXL base): two text readouts concatenated along channels (SDXL: CLIP-L and bigG, 768 + 1280;
  here lab-clip's last layer with its norm and its penultimate layer without, 64 + 64, as two towers of one
  model), the second's pooled, projected embedding plus size and crop micro-conditioning as the vector condition;
  predicts eps; trains on emoji drawn at several sizes and cropped (``emoji_multiscale``);
* ``lab-sd1-inpaint`` (SD 1.5-inpainting): ``lab-sd1-like`` with 5 more input channels, the masked image's latent
  (4) and the mask (1) concatenated to the noisy latent (``ldm_lab.conditioning.inpainting``).

``lab-sd1-like-32`` is ``lab-sd1-like`` at 32x32 (8x8 latents): the first stage of the v1.x lineage (SD v1-1 was
pretrained at 256², then continued at 512²).
"""

from __future__ import annotations

from dataclasses import replace

from ldm_lab.conditioning.base import Null
from ldm_lab.conditioning.conditioner import ConditionerConfig, ConditionSpec
from ldm_lab.conditioning.inpainting import InpaintingEmbedderConfig
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.presets.base import Preset
from ldm_lab.presets.conditioners import ConditionerOf, size_conditions, text_conditions
from ldm_lab.presets.lab import LAB_CLIP_TEXT, LAB_CONDITIONED_UNET, LAB_EMOJI_AUTOENCODER
from ldm_lab.presets.shapes import LAB_CLIP_TEXT_SDXL, MICRO_CONDITIONING_DIM

LAB_CLIP_TEXT_SD2 = replace(LAB_CLIP_TEXT, hidden_layer=-2)  # penultimate block, then the final norm (SD 2.x)
_WIDTH = LAB_CLIP_TEXT.width
SD1_LIKE_UNET = LAB_CONDITIONED_UNET.replace(
    context_dim=_WIDTH, num_heads=2, head_dim=None, use_linear_projection=False,
    context_description=f"lab-clip's text tower, last layer after the final norm, {_WIDTH} (SD 1.x)")
SD2_LIKE_UNET = LAB_CONDITIONED_UNET.replace(
    context_dim=_WIDTH, head_dim=32, num_heads=None, use_linear_projection=True,
    context_description=f"lab-clip's text tower, penultimate layer, then the final norm, {_WIDTH} (SD 2.x)")
SDXL_LIKE_UNET = SD2_LIKE_UNET.replace(
    context_dim=2 * _WIDTH, y_dim=LAB_CLIP_TEXT.projection_dim + 6 * MICRO_CONDITIONING_DIM,
    context_description=f"two readouts of lab-clip concatenated: last layer with its norm ({_WIDTH}) and penultimate "
                        f"without ({_WIDTH}), {2 * _WIDTH} (SDXL: CLIP-L 768 + bigG 1280)",
    y_description=f"pooled lab-clip text {LAB_CLIP_TEXT.projection_dim} + 6 micro-conditioning scalars x "
                  f"{MICRO_CONDITIONING_DIM} (SDXL: 1280 + 6 x 256 = 2816)")
INPAINT_EXTRA_CHANNELS = LAB_EMOJI_AUTOENCODER.embed_dim + 1  # the masked image's latent and the mask (SD: 4 + 1)

_EMOJI = dict(autoencoder=LAB_EMOJI_AUTOENCODER, text_weights="lab-clip", resolution=(64, 64))
SD1_LIKE = Preset("lab-sd1-like", "SD 1.x in miniature on 64x64 emoji: lab-clip's last layer, 2 heads per level, "
                  "1x1-conv projections, eps-prediction", SD1_LIKE_UNET, text_encoders={"text": LAB_CLIP_TEXT},
                  prediction=Prediction.EPS, **_EMOJI)
PRESETS: tuple[Preset, ...] = (
    SD1_LIKE,
    replace(SD1_LIKE, name="lab-sd1-like-32", resolution=(32, 32),
            description="lab-sd1-like at 32x32 (8x8 latents): the pretraining stage of the v1.x lineage in miniature "
                        "(SD v1-1: 256² before 512²)"),
    Preset("lab-sd2-like", "SD 2.x in miniature on 64x64 emoji: lab-clip's penultimate layer, 32-wide heads, Linear "
           "projections, v-prediction", SD2_LIKE_UNET, text_encoders={"text": LAB_CLIP_TEXT_SD2},
           prediction=Prediction.V, **_EMOJI),
    Preset("lab-sd2-like-ztsnr", "lab-sd2-like with the schedule rescaled to zero terminal SNR (Lin et al. 2023, "
           "Alg. 1): pure noise at the last step, which only a v- (or x0-) model can be trained for",
           SD2_LIKE_UNET, text_encoders={"text": LAB_CLIP_TEXT_SD2}, prediction=Prediction.V, zero_terminal_snr=True,
           **_EMOJI),
    Preset("lab-sdxl-like", "SDXL base in miniature on 64x64 emoji: two text readouts concatenated, pooled text + "
           "size/crop micro-conditioning, eps-prediction", SDXL_LIKE_UNET,
           text_encoders={"text": LAB_CLIP_TEXT, "text_2": LAB_CLIP_TEXT_SDXL}, prediction=Prediction.EPS, **_EMOJI),
    replace(SD1_LIKE, name="lab-sd1-inpaint", unet=SD1_LIKE_UNET.replace(
                in_channels=SD1_LIKE_UNET.in_channels + INPAINT_EXTRA_CHANNELS),
            description="SD 1.5-inpainting in miniature: lab-sd1-like with the masked image's latent and the mask "
                        f"concatenated to the noisy latent (in_channels {SD1_LIKE_UNET.in_channels} + "
                        f"{INPAINT_EXTRA_CHANNELS})"),
)


def sdxl_like_conditioner(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """Both text readouts and the pooled prompt (dropped to the empty prompt, which the lab models are sampled
    with), and size/crop, never dropped."""
    conditions = text_conditions(preset, dropout, trainable, Null.NULL_INPUT) + size_conditions(preset)
    return ConditionerConfig(conditions, "prompt, pooled prompt and SDXL size/crop micro-conditioning")


def inpainting_conditioner(preset: Preset, dropout: float, trainable: bool) -> ConditionerConfig:
    """The prompt, and the masked image's latent with its mask, concatenated (kept in the unconditional branch, as
    diffusers' inpainting pipeline does: guidance is towards the prompt, not towards the image)."""
    inpaint = ConditionSpec("inpaint", ("inpaint",), InpaintingEmbedderConfig(LAB_EMOJI_AUTOENCODER.embed_dim),
                            dropped=Null.KEEP)
    return ConditionerConfig(text_conditions(preset, dropout, trainable) + (inpaint,),
                             "a prompt, and the masked image's latent with its mask")


CONDITIONERS: dict[str, ConditionerOf] = {"lab-sdxl-like": sdxl_like_conditioner,
                                          "lab-sd1-inpaint": inpainting_conditioner}
