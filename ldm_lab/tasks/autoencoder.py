"""Training a first stage (LDM §3.1, App. G): reconstruction + perceptual + adversarial + KL (or VQ) terms.

    L = |x - D(E(x))|_1 + w_p d_perc + lambda * w_adv * f_d * L_G + w_kl KL(q(z|x) || N(0, I))   (or + L_VQ)
        + f_d * L_D                             (the discriminator's own term; see ``ldm_lab.tasks.gan``)

with w_adv = ``disc_weight`` on the generator's term only and f_d = ``disc_factor`` on both (LDM's
``LPIPSWithDiscriminator``, ldm/modules/losses/contperceptual.py; taming's ``VQLPIPSWithDiscriminator``).
LDM sums its KL-autoencoder reconstruction and KL terms over pixels; we divide the whole objective by the pixel
count C*H*W, so every weight keeps LDM's meaning (kl_weight=1e-6 is LDM's) while the loss stays about 1 (taming's
VQ objective already averages over pixels). The adversarial terms switch on after ``disc_start`` training
batches, as LDM's ``disc_start``: a discriminator facing blurry early reconstructions only destabilises them.

Optimisation (:func:`ldm_first_stage_train_config`): LDM's ``AutoencoderKL.configure_optimizers`` (and taming's
``VQModel``) use two ``Adam(betas=(0.5, 0.9))``, one per player, at the same learning rate, without weight decay
or gradient clipping. Adam is elementwise, so one AdamW with weight_decay 0 and no global gradient-norm clip over
both players' parameters is the same optimizer, provided each player's gradient comes from its own loss only
(``ldm_lab.tasks.gan`` ensures that). The one difference left: PyTorch Lightning's LDM steps the generator
before it computes the discriminator's loss on the same batch (the discriminator then sees reconstructions of
the updated autoencoder); we compute both losses on the same reconstructions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ldm_lab.device import model_device
from ldm_lab.nn.autoencoder import Autoencoder, AutoencoderConfig, Regularizer
from ldm_lab.tasks.gan import PatchDiscriminator, adaptive_weight, discriminator_loss, generator_loss
from ldm_lab.tasks.perceptual import LabClipPerceptual
from ldm_lab.training.config import TrainConfig

# LDM's AutoencoderKL.configure_optimizers / taming's VQModel: Adam(betas=(0.5, 0.9)), no decay, no clipping, and
# no learning-rate schedule (constant lr, no warm-up). See the module docstring for why one optimizer suffices.
LDM_FIRST_STAGE_OPTIM = dict(betas=(0.5, 0.9), weight_decay=0.0, max_grad_norm=None, warmup_steps=0,
                             min_lr_ratio=1.0)
LDM_MAX_ADAPTIVE_WEIGHT = 1e4  # LDM/taming clamp the adaptive weight to [0, 1e4] (in their loss units)
KL_DISC_WEIGHT = 0.5   # LDM's models/first_stage_models/kl-f*/config.yaml
VQ_DISC_WEIGHT = 0.75  # LDM's vq-f* and taming's VQGAN configs


def ldm_first_stage_train_config(batch_size: int, lr: float, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` that optimises an :class:`AutoencoderGAN` as LDM does its first stages: one AdamW
    over both players with ``LDM_FIRST_STAGE_OPTIM`` equals LDM's two ``Adam(betas=(0.5, 0.9))`` (module
    docstring). ``overrides`` sets any other field (steps, checkpoint_every, ...) or replaces these."""
    return TrainConfig(**{**LDM_FIRST_STAGE_OPTIM, "batch_size": batch_size, "lr": lr, **overrides})


@dataclass(frozen=True)
class AutoencoderLossConfig:
    """Weights of LDM's first-stage objective (``LPIPSWithDiscriminator``; defaults from its kl-f* configs)."""

    reconstruction: Literal["l1", "l2"] = "l1"  # pixel distance; LDM uses L1
    perceptual_weight: float = 1.0    # lab-clip perceptual distance (LDM: LPIPS, weight 1.0); 0 turns it off
    kl_weight: float = 1e-6           # KL autoencoders: LDM's 1e-6, in its summed-over-pixels units
    disc_weight: float = KL_DISC_WEIGHT  # w_adv, on the generator's term only: LDM's kl-f* configs 0.5, VQ configs
                                      # 0.75 (use for_regularizer); 0 turns the GAN off
    disc_factor: float = 1.0          # f_d, on both GAN terms once they are on (LDM's disc_factor: 1.0)
    disc_start: int = 2000            # training batches before the GAN terms switch on (LDM: 50001, longer runs)
    adaptive_weight: bool = True      # scale L_G by VQGAN's adaptive weight lambda; False: lambda = 1
    disc_width: int = 64              # channels of the discriminator's first conv
    disc_layers: int = 2              # its strided layers; 2 judges 34x34-pixel patches (LDM at 256 px: 3, 70x70)

    @classmethod
    def for_regularizer(cls, regularizer: Regularizer, **overrides) -> AutoencoderLossConfig:
        """LDM's weights for a KL (disc_weight 0.5) or VQ (taming's 0.75) first stage; ``overrides`` sets any
        other field, e.g. ``disc_start``."""
        return cls(**{"disc_weight": VQ_DISC_WEIGHT if regularizer is Regularizer.VQ else KL_DISC_WEIGHT,
                      **overrides})


class AutoencoderGAN(nn.Module):
    """The autoencoder and its discriminator in one module, so that one optimizer and one checkpoint hold both.
    ``batches_seen`` counts training batches (a buffer, so a resumed run knows when the GAN switched on)."""

    def __init__(self, autoencoder: AutoencoderConfig, loss: AutoencoderLossConfig = AutoencoderLossConfig()) -> None:
        super().__init__()
        self.config, self.loss_config = autoencoder, loss
        self.autoencoder = Autoencoder(autoencoder)
        self.discriminator = PatchDiscriminator(autoencoder.out_channels, loss.disc_width, loss.disc_layers)
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))

    def freeze_encoder(self) -> AutoencoderGAN:
        """Train the decoder (and the discriminator) only: the encoder and its quant conv keep their weights, so
        the latent space a diffusion model was trained on stays valid. Stable Diffusion's improved VAEs
        (sd-vae-ft-mse / ft-ema, Stability AI 2022) fine-tuned their decoders this way."""
        for part in Autoencoder.LATENT_SPACE_PARTS:
            getattr(self.autoencoder, part).requires_grad_(False)
        return self

    def adopt_encoder(self, other: AutoencoderGAN) -> AutoencoderGAN:
        """Copy ``other``'s encoder and quant conv (what defines the latent space); the decoder, which may be
        built differently, keeps its own weights."""
        for part in Autoencoder.LATENT_SPACE_PARTS:
            try:
                getattr(self.autoencoder, part).load_state_dict(getattr(other.autoencoder, part).state_dict())
            except RuntimeError as error:  # a shape mismatch: the two encoders are built differently
                reason = str(error).splitlines()[-1].strip()
                raise ValueError(f"cannot take over the {part} of a first stage built differently ({reason}); "
                                 "only the decoder may differ (decoder_ch, decoder_num_res_blocks).") from None
        return self

    @property
    def adversarial(self) -> bool:
        """Whether the GAN terms are on for the current batch."""
        c = self.loss_config
        return c.disc_weight > 0 and c.disc_factor > 0 and int(self.batches_seen) >= c.disc_start

    def load_pretrained(self) -> None:
        """Nothing to load: a first stage has no frozen pretrained parts (``LatentDiffusion.load_pretrained``
        loads a diffusion model's), so a fresh run can call this on any target's model."""


def max_adaptive_weight(images: Tensor, regularizer: Regularizer) -> float:
    """LDM's clamp of the adaptive weight, 1e4, in our units. LDM's KL objective sums the reconstruction over
    pixels, ours averages it: our gradient ratio is C*H*W times smaller, so the clamp is 1e4 / (C*H*W). Taming's
    VQ objective (``VQLPIPSWithDiscriminator``) already averages over pixels: its clamp is 1e4 unchanged."""
    per_pixel = images[0].numel() if regularizer is Regularizer.KL else 1
    return LDM_MAX_ADAPTIVE_WEIGHT / per_pixel


def pixel_distance(x: Tensor, y: Tensor, kind: str) -> Tensor:
    """Per image ``(b,)``: mean |x - y| (L1) or mean (x - y)^2 (L2)."""
    difference = (x - y).abs() if kind == "l1" else (x - y).pow(2)
    return difference.flatten(1).mean(dim=1)


def random_crops(images: Tensor, size: int) -> Tensor:
    """One random ``size`` x ``size`` window of each image (b, c, h, w) -> (b, c, size, size). The autoencoder
    is convolutional, so it trains on windows and runs on whole images: a 32 px window costs a quarter of a
    64 px image, and the encoder, decoder and discriminator see as many distinct local patterns."""
    height, width = images.shape[-2:]
    if size > min(height, width):
        raise ValueError(f"crop {size} is larger than the {height}x{width} training images; crop at most "
                         f"{min(height, width)} (or set no crop).")
    tops = torch.randint(0, height - size + 1, (len(images),)).tolist()
    lefts = torch.randint(0, width - size + 1, (len(images),)).tolist()
    return torch.stack([image[:, t:t + size, l:l + size] for image, t, l in zip(images, tops, lefts)])


class AutoencoderTask:
    """The trainer's task for an :class:`AutoencoderGAN`. ``sample`` shows originals above their
    reconstructions (the task's fixed ``preview`` images, e.g. from the validation split)."""

    def __init__(self, preview: Tensor, perceptual: nn.Module | None = None, crop: int | None = None) -> None:
        self.preview = preview
        self.crop = crop  # train on random crop x crop windows (LDM trains its first stages on 256 px crops)
        self.perceptual = perceptual  # built on first use when perceptual_weight > 0 (loads lab-clip)

    def _perceptual(self, images: Tensor) -> nn.Module:
        if self.perceptual is None:
            self.perceptual = LabClipPerceptual()
        return self.perceptual.to(images.device)

    def reconstruction_loss(self, model: AutoencoderGAN, images: Tensor, output) -> Tensor:
        """Pixel + perceptual distance (+ KL / VQ term), averaged over the batch."""
        c = model.loss_config
        loss = pixel_distance(images, output.reconstruction, c.reconstruction).mean()
        if c.perceptual_weight > 0:
            loss = loss + c.perceptual_weight * self._perceptual(images)(images, output.reconstruction).mean()
        return loss

    def regularizer_loss(self, model: AutoencoderGAN, images: Tensor, output) -> Tensor:
        """KL: w_kl * KL / (C*H*W) (LDM's per-pixel-summed weighting). VQ: the codebook + commitment loss."""
        if output.posterior is not None:
            return model.loss_config.kl_weight * output.posterior.kl().mean() / images[0].numel()
        return output.quantizer.loss

    def loss(self, model: AutoencoderGAN, batch: dict) -> Tensor:
        images = random_crops(batch["image"], self.crop) if self.crop and model.training else batch["image"]
        output = model.autoencoder(images)
        reconstruction = self.reconstruction_loss(model, images, output)
        loss = reconstruction + self.regularizer_loss(model, images, output)
        if model.training:
            model.batches_seen += 1
        if not model.adversarial:
            return loss
        c = model.loss_config
        g_loss = generator_loss(model.discriminator, output.reconstruction)
        weight = self.generator_weight(model, images, reconstruction, g_loss)
        d_loss = discriminator_loss(model.discriminator, images, output.reconstruction)
        return loss + c.disc_factor * (c.disc_weight * weight * g_loss + d_loss)

    def generator_weight(self, model: AutoencoderGAN, images: Tensor, reconstruction: Tensor,
                         g_loss: Tensor) -> Tensor | float:
        """lambda: VQGAN's adaptive weight at the decoder's last layer, clamped as LDM (``max_adaptive_weight``);
        1 when ``adaptive_weight`` is off or in eval mode."""
        if not (model.loss_config.adaptive_weight and model.training):
            return 1.0
        return adaptive_weight(reconstruction, g_loss, model.autoencoder.decoder.conv_out.weight,
                               max_adaptive_weight(images, model.config.regularizer))

    @torch.no_grad()
    def sample(self, model: AutoencoderGAN) -> Tensor:
        preview = self.preview.to(model_device(model))
        return torch.cat([preview, model.autoencoder(preview, sample_posterior=False).reconstruction.clamp(-1, 1)])
