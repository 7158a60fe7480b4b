"""The off-the-shelf arm of the time-to-quality benchmark: emoji text-to-image with diffusers' own classes and
diffusers' own training recipe, untuned.

Models, all trained from scratch (nothing is downloaded):

* ``diffusers.AutoencoderKL`` — three levels, so 64x64 RGB become a 16x16x4 latent (f = 4);
* ``transformers.CLIPTextModel`` — a small CLIP text tower reading our bundled open_clip BPE ids (the same
  49,408-token vocabulary as OpenAI CLIP, <start> = 49406, <end> = 49407, padded with <end> as the Hugging Face
  tokenizer of Stable Diffusion 1.x pads);
* ``diffusers.UNet2DConditionModel`` — Stable Diffusion's block layout (cross-attention down blocks, a plain
  down block last; mirrored up) at three levels, with diffusers' defaults for everything not set here.

Recipe (defaults of ``examples/text_to_image/train_text_to_image.py`` in huggingface/diffusers): AdamW,
lr 1e-4, betas (0.9, 0.999), weight decay 1e-2, eps 1e-8, constant learning rate, batch 16, gradient norm
clipped to 1.0, no EMA, no noise offset, no SNR weighting, no caption dropout; Stable Diffusion's DDPM schedule
(1000 steps, "scaled_linear" betas 0.00085 to 0.012), epsilon prediction, MSE loss; latents are
``vae.encode(x).latent_dist.sample() * vae.config.scaling_factor`` with diffusers' default factor 0.18215. The
example fine-tunes a pretrained U-Net with a frozen, pretrained text encoder; here the text encoder starts from
scratch too, so it trains jointly with the U-Net in one optimizer, as ``train_dreambooth.py
--train_text_encoder`` does.

diffusers has no example that trains a VAE for latent diffusion from scratch. The nearest,
``examples/research_projects/autoencoderkl/train_autoencoderkl.py``, uses an L2 reconstruction loss summed per
image, the KL term summed per image at weight 1e-6 (LDM's), plus LPIPS and a patch discriminator. LPIPS needs
pretrained VGG weights, which we do not have, and the discriminator starts only at step 50,001 by default, later
than any run here; so the VAE trains on the first two terms alone, with the same AdamW as the U-Net. It trains
first, for a share of the budget (default 20 %), and is frozen after.

Sampling: the example trains no unconditional branch (no caption dropout), so classifier-free guidance has
nothing to push away from; :func:`generate` samples with guidance 1 (the conditional prediction alone) and
DPM-Solver++ (``DPMSolverMultistepScheduler`` built from the training schedule's config) in 20 steps.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel

from ldm_lab.conditioning.text import chunk_tokens

START_OF_TEXT, END_OF_TEXT = 49406, 49407  # CLIP's <start> and <end> token ids (open_clip's BPE and HF's agree)
VOCABULARY = 49408                          # CLIP's BPE vocabulary
CONTEXT_LENGTH = 77                         # CLIP's text context
PHASES = ("vae", "unet")                    # the two training phases, in order
ARM_FILE = "arm.json"                       # configs and training record inside a saved arm's folder
WEIGHT_FILES = {"vae": "vae.safetensors", "unet": "unet.safetensors", "text_encoder": "text_encoder.safetensors"}

# Stable Diffusion 1.x's scheduler_config.json, what train_text_to_image.py loads with DDPMScheduler.from_pretrained,
# less set_alpha_to_one and skip_prk_steps (PNDM's; DDPM and DPM-Solver have no such option and ignore them).
SD_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
               "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "clip_sample": False,
               "steps_offset": 1}


@dataclass(frozen=True)
class DiffusersArmConfig:
    """Sizes and recipe of the diffusers arm. Defaults: the benchmark's models (VAE 3.8 M, text encoder 15.8 M of
    which 12.6 M is the token table, U-Net 18.2 M parameters) and train_text_to_image.py's hyper-parameters."""
    resolution: int = 64                                   # image side in pixels (emoji: 64)
    # AutoencoderKL: one level per entry; every level but the last halves the side (3 levels: f = 4)
    vae_block_out_channels: tuple[int, ...] = (64, 128, 128)
    vae_layers_per_block: int = 1                          # diffusers' default
    vae_norm_num_groups: int = 32                          # diffusers' default
    latent_channels: int = 4                               # diffusers' default (Stable Diffusion's)
    # CLIPTextModel, from scratch
    text_hidden_size: int = 256                            # width; also the U-Net's cross_attention_dim
    text_intermediate_size: int = 1024                     # MLP width (CLIP: 4 x hidden)
    text_layers: int = 4                                   # transformer blocks
    text_heads: int = 4                                    # attention heads
    # UNet2DConditionModel: cross-attention at every level but the deepest, as Stable Diffusion's
    unet_block_out_channels: tuple[int, ...] = (64, 128, 256)
    unet_layers_per_block: int = 2                         # diffusers' default
    unet_attention_head_dim: int = 8                       # diffusers' default (it is the number of heads in SD1)
    unet_norm_num_groups: int = 32                         # diffusers' default
    # train_text_to_image.py's defaults
    batch_size: int = 16                                   # --train_batch_size
    learning_rate: float = 1e-4                            # --learning_rate, constant (--lr_scheduler constant)
    adam_betas: tuple[float, float] = (0.9, 0.999)         # --adam_beta1, --adam_beta2
    adam_weight_decay: float = 1e-2                        # --adam_weight_decay
    adam_epsilon: float = 1e-8                             # --adam_epsilon
    max_grad_norm: float = 1.0                             # --max_grad_norm
    # the VAE phase (research_projects/autoencoderkl's loss without LPIPS and discriminator)
    vae_learning_rate: float = 1e-4                        # AdamW, otherwise as above
    kl_weight: float = 1e-6                                # --kl_scale
    checkpoint_minutes: float = 10.0                       # with a checkpoint_dir: save this often (and per phase)

    def __post_init__(self) -> None:
        if len(self.vae_block_out_channels) < 1 or len(self.unet_block_out_channels) < 2:
            raise ValueError("give the VAE at least one level and the U-Net at least two "
                             f"(got {self.vae_block_out_channels} and {self.unet_block_out_channels}).")
        if self.resolution % self.downsampling_factor:
            raise ValueError(f"resolution {self.resolution} is not divisible by the VAE's factor "
                             f"{self.downsampling_factor}; use a multiple of it or fewer VAE levels.")

    @property
    def downsampling_factor(self) -> int:
        """f: each VAE level after the first halves the side."""
        return 2 ** (len(self.vae_block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        """Side of the latent the U-Net denoises."""
        return self.resolution // self.downsampling_factor


@dataclass
class DiffusersArm:
    """A trained (or loaded) diffusers arm and its training record."""
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    config: DiffusersArmConfig
    scheduler_config: dict = field(default_factory=lambda: dict(SD_SCHEDULE))   # DDPMScheduler kwargs
    steps: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))            # per phase
    images_per_second: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))      # wall clock
    last_loss: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, math.nan))

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device


# --- models ---------------------------------------------------------------------------------------------------

def build_vae(config: DiffusersArmConfig) -> AutoencoderKL:
    """AutoencoderKL with diffusers' encoder/decoder blocks, one per entry of ``vae_block_out_channels``."""
    levels = len(config.vae_block_out_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
                         up_block_types=("UpDecoderBlock2D",) * levels,
                         block_out_channels=config.vae_block_out_channels,
                         layers_per_block=config.vae_layers_per_block, latent_channels=config.latent_channels,
                         norm_num_groups=config.vae_norm_num_groups, sample_size=config.resolution)


def text_encoder_config(config: DiffusersArmConfig) -> CLIPTextConfig:
    """A small CLIP text tower on CLIP's vocabulary and special tokens (padding is <end>, as SD1's tokenizer)."""
    return CLIPTextConfig(vocab_size=VOCABULARY, hidden_size=config.text_hidden_size,
                          intermediate_size=config.text_intermediate_size, num_hidden_layers=config.text_layers,
                          num_attention_heads=config.text_heads, max_position_embeddings=CONTEXT_LENGTH,
                          bos_token_id=START_OF_TEXT, eos_token_id=END_OF_TEXT, pad_token_id=END_OF_TEXT)


def build_text_encoder(config: DiffusersArmConfig) -> CLIPTextModel:
    return CLIPTextModel(text_encoder_config(config))


def build_unet(config: DiffusersArmConfig) -> UNet2DConditionModel:
    """Stable Diffusion's layout at ``len(unet_block_out_channels)`` levels: cross-attention down blocks then one
    plain down block; plain up block then cross-attention up blocks; a cross-attention middle block."""
    levels = len(config.unet_block_out_channels)
    return UNet2DConditionModel(
        sample_size=config.latent_size, in_channels=config.latent_channels, out_channels=config.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1),
        block_out_channels=config.unet_block_out_channels, layers_per_block=config.unet_layers_per_block,
        attention_head_dim=config.unet_attention_head_dim, norm_num_groups=config.unet_norm_num_groups,
        cross_attention_dim=config.text_hidden_size)


def build_arm(config: DiffusersArmConfig = DiffusersArmConfig()) -> DiffusersArm:
    """Freshly initialised models (diffusers' and transformers' own initialisation)."""
    return DiffusersArm(vae=build_vae(config), unet=build_unet(config), text_encoder=build_text_encoder(config),
                        config=config)


def parameter_counts(arm: DiffusersArm) -> dict[str, int]:
    """Parameters of each model."""
    return {name: sum(p.numel() for p in model.parameters())
            for name, model in (("vae", arm.vae), ("text_encoder", arm.text_encoder), ("unet", arm.unet))}


# --- text -----------------------------------------------------------------------------------------------------

def token_ids(captions: list[str]) -> Tensor:
    """(b, 77) CLIP token ids from our bundled BPE: <start>, the caption, <end>, then <end> as padding (what
    ``CLIPTokenizer(..., padding="max_length")`` gives for Stable Diffusion 1.x)."""
    return chunk_tokens(captions, 1, CONTEXT_LENGTH, pad_token_id=END_OF_TEXT)[:, 0]


def encode_text(text_encoder: CLIPTextModel, captions: list[str]) -> Tensor:
    """The U-Net's context (b, 77, hidden): the text tower's last hidden state, as train_text_to_image.py."""
    ids = token_ids(captions).to(text_encoder.device)
    return text_encoder(ids, return_dict=False)[0]


# --- losses ---------------------------------------------------------------------------------------------------

def vae_loss(vae: AutoencoderKL, images: Tensor, kl_weight: float) -> Tensor:
    """L2 reconstruction summed per image + kl_weight x KL(q(z|x) || N(0, I)) summed per image, both averaged
    over the batch (train_autoencoderkl.py's nll_loss and kl_loss; LDM's KL-regularised first stage, §3.1)."""
    posterior = vae.encode(images).latent_dist
    reconstruction = vae.decode(posterior.sample()).sample
    nll = F.mse_loss(reconstruction.float(), images.float(), reduction="sum") / images.shape[0]
    kl = posterior.kl().sum() / images.shape[0]
    return nll + kl_weight * kl


def latents_of(vae: AutoencoderKL, images: Tensor) -> Tensor:
    """z = E(x) sampled from the posterior, scaled by the VAE's scaling_factor (train_text_to_image.py)."""
    with torch.no_grad():
        return vae.encode(images).latent_dist.sample() * vae.config.scaling_factor


def epsilon_loss(unet: UNet2DConditionModel, schedule: DDPMScheduler, latents: Tensor, context: Tensor) -> Tensor:
    """|| eps - eps_theta(z_t, t, c) ||^2 with t uniform in [0, T) and z_t = sqrt(ab_t) z + sqrt(1 - ab_t) eps
    (DDPM, Ho et al. 2020, eq. 14; LDM eq. 2), averaged over all elements as train_text_to_image.py."""
    noise = torch.randn_like(latents)
    t = torch.randint(0, schedule.config.num_train_timesteps, (latents.shape[0],), device=latents.device)
    noisy = schedule.add_noise(latents, noise, t)
    prediction = unet(noisy, t, context, return_dict=False)[0]
    return F.mse_loss(prediction.float(), noise.float(), reduction="mean")


# --- training -------------------------------------------------------------------------------------------------

def shuffled_batches(data: Dataset, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, list]]:
    """(images, captions) batches over epochs of a seeded random order, as ``DataLoader(shuffle=True)``; the
    last short batch of an epoch is kept."""
    if len(data) == 0:
        raise ValueError("the training dataset is empty; pass ldm_lab.data.materialise.training_dataset('emoji', "
                         "(64, 64)) or another map-style dataset of {'image', 'caption'} items.")
    while True:
        order = torch.randperm(len(data), generator=generator).tolist()
        for start in range(0, len(order), batch_size):
            items = [data[i] for i in order[start:start + batch_size]]
            yield torch.stack([item["image"] for item in items]), [item["caption"] for item in items]


def adamw(parameters, config: DiffusersArmConfig, learning_rate: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameters, lr=learning_rate, betas=config.adam_betas,
                             weight_decay=config.adam_weight_decay, eps=config.adam_epsilon)


class _Phase:
    """One training phase against a wall-clock deadline: counts steps, keeps the last loss, checkpoints."""

    def __init__(self, arm: DiffusersArm, name: str, seconds: float, max_steps: int | None, progress: bool,
                 checkpoint_dir: Path | None) -> None:
        self.arm, self.name, self.max_steps, self.checkpoint_dir = arm, name, max_steps, checkpoint_dir
        self.start = time.perf_counter()
        self.deadline = self.start + seconds
        self.next_checkpoint = self.start + arm.config.checkpoint_minutes * 60
        self.saving_seconds = 0.0
        self.bar = tqdm(desc=f"diffusers arm: {name}", unit="step", disable=not progress, dynamic_ncols=True)

    def running(self) -> bool:
        steps = self.arm.steps[self.name]
        return time.perf_counter() < self.deadline and (self.max_steps is None or steps < self.max_steps)

    def after_step(self, loss: Tensor) -> None:
        self.arm.steps[self.name] += 1
        self.arm.last_loss[self.name] = loss.item()
        self.bar.update()
        self.bar.set_postfix(loss=f"{self.arm.last_loss[self.name]:.4g}")
        if self.checkpoint_dir is not None and time.perf_counter() >= self.next_checkpoint:
            self._checkpoint()
            self.next_checkpoint = time.perf_counter() + self.arm.config.checkpoint_minutes * 60

    def _checkpoint(self) -> None:
        """Save the arm; the time it takes is added to the deadline, so saving costs no training time."""
        began = time.perf_counter()
        self._record()
        save(self.arm, self.checkpoint_dir)
        spent = time.perf_counter() - began
        self.saving_seconds += spent
        self.deadline += spent

    def _record(self) -> None:
        seconds = time.perf_counter() - self.start - self.saving_seconds
        self.arm.seconds[self.name] = seconds
        self.arm.images_per_second[self.name] = (
            self.arm.steps[self.name] * self.arm.config.batch_size / seconds if seconds > 0 else 0.0)

    def finish(self) -> None:
        self.bar.close()
        self._record()
        if self.checkpoint_dir is not None:
            save(self.arm, self.checkpoint_dir)


def train_vae(arm: DiffusersArm, batches: Iterator, phase: _Phase) -> None:
    """Phase 1: the VAE alone on :func:`vae_loss`."""
    config = arm.config
    optimizer = adamw(arm.vae.parameters(), config, config.vae_learning_rate)
    arm.vae.train()
    while phase.running():
        images, _ = next(batches)
        loss = vae_loss(arm.vae, images.to(arm.device), config.kl_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(arm.vae.parameters(), config.max_grad_norm)
        optimizer.step()
        phase.after_step(loss.detach())
    arm.vae.eval().requires_grad_(False)


def train_unet(arm: DiffusersArm, batches: Iterator, phase: _Phase) -> None:
    """Phase 2: U-Net and text encoder together on :func:`epsilon_loss`, the VAE frozen."""
    config = arm.config
    schedule = DDPMScheduler.from_config(arm.scheduler_config)
    parameters = list(itertools.chain(arm.unet.parameters(), arm.text_encoder.parameters()))
    optimizer = adamw(parameters, config, config.learning_rate)
    arm.vae.eval().requires_grad_(False)
    arm.unet.train()
    arm.text_encoder.train()
    while phase.running():
        images, captions = next(batches)
        latents = latents_of(arm.vae, images.to(arm.device))
        loss = epsilon_loss(arm.unet, schedule, latents, encode_text(arm.text_encoder, captions))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        phase.after_step(loss.detach())
    arm.unet.eval()
    arm.text_encoder.eval()


def train(data: Dataset, minutes: float, vae_share: float = 0.2, seed: int = 0, progress: bool = True,
          checkpoint_dir: Path | None = None, config: DiffusersArmConfig = DiffusersArmConfig(),
          max_steps: int | None = None, device: str | torch.device = "cpu") -> DiffusersArm:
    """Train the diffusers arm for ``minutes`` of wall clock: the VAE for ``vae_share`` of them, then the U-Net
    and text encoder for the rest. Each phase stops at the first step boundary past its deadline (or after
    ``max_steps`` steps, if given). Uses the caller's torch thread count; draws from its own seeded generators and
    leaves the caller's global random state as it was. With ``checkpoint_dir`` the arm is saved there after each
    phase and every ``config.checkpoint_minutes``; saving time is not charged to the budget."""
    if minutes <= 0 or not 0 < vae_share < 1:
        raise ValueError(f"need minutes > 0 and 0 < vae_share < 1 (got minutes={minutes}, vae_share={vae_share}); "
                         "the VAE must train before the U-Net can read its latents.")
    budget = minutes * 60
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        arm = build_arm(config)
        arm.vae.to(device), arm.unet.to(device), arm.text_encoder.to(device)
        batches = shuffled_batches(data, config.batch_size, torch.Generator().manual_seed(seed))
        start = time.perf_counter()
        phase = _Phase(arm, "vae", budget * vae_share, max_steps, progress, checkpoint_dir)
        train_vae(arm, batches, phase)
        phase.finish()
        remaining = budget - (time.perf_counter() - start - phase.saving_seconds)
        phase = _Phase(arm, "unet", max(remaining, 0.0), max_steps, progress, checkpoint_dir)
        train_unet(arm, batches, phase)
        phase.finish()
    return arm


# --- sampling -------------------------------------------------------------------------------------------------

@torch.no_grad()
def denoise(arm: DiffusersArm, noise: Tensor, context: Tensor, null_context: Tensor | None, steps: int,
            guidance_scale: float) -> Tensor:
    """DPM-Solver++ (Lu et al. 2022) from ``noise`` to z_0; with guidance_scale != 1 classifier-free guidance
    eps = eps(null) + s (eps(c) - eps(null)) (Ho & Salimans 2022), the null context being the empty caption's."""
    solver = DPMSolverMultistepScheduler.from_config(arm.scheduler_config)
    solver.set_timesteps(steps, device=noise.device)
    latents = noise * solver.init_noise_sigma
    for t in solver.timesteps:
        model_input = solver.scale_model_input(latents, t)
        if null_context is None:
            eps = arm.unet(model_input, t, context, return_dict=False)[0]
        else:
            both = arm.unet(torch.cat([model_input] * 2), t, torch.cat([null_context, context]),
                            return_dict=False)[0]
            eps_null, eps_cond = both.chunk(2)
            eps = eps_null + guidance_scale * (eps_cond - eps_null)
        latents = solver.step(eps, t, latents, return_dict=False)[0]
    return latents


@torch.no_grad()
def generate(arm: DiffusersArm, captions: list[str], seed: int, steps: int = 20, guidance_scale: float = 1.0,
             batch_size: int = 64) -> Tensor:
    """Images (n, 3, H, W) in [-1, 1] for ``captions``. The starting noise comes from a CPU generator seeded with
    ``seed``, drawn for all captions at once, so the images do not depend on ``batch_size``."""
    if not captions:
        raise ValueError("give at least one caption to generate an image for.")
    config, device = arm.config, arm.device
    arm.vae.eval(), arm.unet.eval(), arm.text_encoder.eval()
    shape = (len(captions), config.latent_channels, config.latent_size, config.latent_size)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    images = []
    for start in range(0, len(captions), batch_size):
        chunk = captions[start:start + batch_size]
        context = encode_text(arm.text_encoder, chunk)
        null = None if guidance_scale == 1.0 else encode_text(arm.text_encoder, [""] * len(chunk))
        latents = denoise(arm, noise[start:start + batch_size].to(device), context, null, steps, guidance_scale)
        decoded = arm.vae.decode(latents / arm.vae.config.scaling_factor, return_dict=False)[0]
        images.append(decoded.clamp(-1, 1).cpu())
    return torch.cat(images)


# --- saving ---------------------------------------------------------------------------------------------------

def _config_from_json(fields: dict) -> DiffusersArmConfig:
    return DiffusersArmConfig(**{key: tuple(value) if isinstance(value, list) else value
                                 for key, value in fields.items()})


def save(arm: DiffusersArm, folder: str | Path) -> Path:
    """Write the three models as safetensors and ``arm.json`` (configs and training record) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    models = {"vae": arm.vae, "unet": arm.unet, "text_encoder": arm.text_encoder}
    for name, model in models.items():
        state = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
        save_file(state, folder / WEIGHT_FILES[name])
    record = {"config": asdict(arm.config), "scheduler_config": arm.scheduler_config, "steps": arm.steps,
              "images_per_second": arm.images_per_second, "seconds": arm.seconds, "last_loss": arm.last_loss,
              "parameters": parameter_counts(arm),
              "model_configs": {"vae": dict(arm.vae.config), "unet": dict(arm.unet.config),
                                "text_encoder": arm.text_encoder.config.to_dict()}}
    (folder / ARM_FILE).write_text(json.dumps(record, indent=2, default=list))
    return folder


def load(folder: str | Path, device: str | torch.device = "cpu") -> DiffusersArm:
    """An arm saved by :func:`save`, in eval mode."""
    folder = Path(folder)
    if not (folder / ARM_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds no {ARM_FILE}; give the folder that save() wrote.")
    record = json.loads((folder / ARM_FILE).read_text())
    arm = build_arm(_config_from_json(record["config"]))
    arm.scheduler_config = record["scheduler_config"]
    arm.steps, arm.images_per_second = record["steps"], record["images_per_second"]
    arm.seconds, arm.last_loss = record["seconds"], record["last_loss"]
    for name, model in (("vae", arm.vae), ("unet", arm.unet), ("text_encoder", arm.text_encoder)):
        model.load_state_dict(load_file(folder / WEIGHT_FILES[name]))
        model.to(device).eval()
    return arm
