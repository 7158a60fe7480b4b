"""Autoencoder weights between ldm_lab, the original LDM/SGM checkpoints and diffusers' ``AutoencoderKL``.

    load_original_autoencoder("sd15.safetensors")      -> Autoencoder   (keys ``first_stage_model.*``, or bare)
    autoencoder_from_original(state_dict, config=None)  -> Autoencoder   original_state_dict(Autoencoder) -> dict
    autoencoder_from_diffusers(AutoencoderKL)           -> Autoencoder   autoencoder_to_diffusers(Autoencoder)

Our module names follow LDM's except for a few words, so each map is a short list of renames applied to
every parameter name. Files are read with safetensors, or ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ldm_lab.convert.files import read_state_dict
from ldm_lab.nn.autoencoder import NAMED_CONFIGS, Autoencoder, AutoencoderConfig, Regularizer

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

StateDict = Mapping[str, Tensor]
ORIGINAL_PREFIX = "first_stage_model."  # inside full LDM / SD / SDXL checkpoints
MODEL_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "quantize.")  # not loss.*, EMA, ...

# (pattern, replacement) on our parameter names, in order -> LDM's ``ldm.modules.diffusionmodules.model``.
ORIGINAL_RENAMES = [
    (r"^encoder\.levels\.(\d+)\.", r"encoder.down.\1."),
    (r"^decoder\.levels\.(\d+)\.", r"decoder.up.\1."),
    (r"\.blocks\.", ".block."),
    (r"\.attentions\.", ".attn."),
    (r"^encoder\.down\.(\d+)\.resample\.", r"encoder.down.\1.downsample."),
    (r"^decoder\.up\.(\d+)\.resample\.", r"decoder.up.\1.upsample."),
    (r"\.mid\.attn\.", ".mid.attn_1."),
    (r"\.skip\.", ".nin_shortcut."),
    (r"\.to_q\.", ".q."), (r"\.to_k\.", ".k."), (r"\.to_v\.", ".v."), (r"\.to_out\.", ".proj_out."),
    (r"^quantizer\.codebook\.", "quantize.embedding."),
]

# The same for diffusers' ``AutoencoderKL``, once the decoder levels are renumbered deepest-first.
DIFFUSERS_RENAMES = [
    (r"^encoder\.levels\.", "encoder.down_blocks."),
    (r"\.blocks\.", ".resnets."),
    (r"^(encoder\.down_blocks\.\d+)\.resample\.", r"\1.downsamplers.0."),
    (r"^(decoder\.up_blocks\.\d+)\.resample\.", r"\1.upsamplers.0."),
    (r"\.mid\.block_1\.", ".mid_block.resnets.0."),
    (r"\.mid\.block_2\.", ".mid_block.resnets.1."),
    (r"\.mid\.attn\.", ".mid_block.attentions.0."),
    (r"\.skip\.", ".conv_shortcut."),
    (r"\.norm_out\.", ".conv_norm_out."),
    (r"(attentions\.\d+)\.norm\.", r"\1.group_norm."),
    (r"\.to_out\.", ".to_out.0."),
]


def _renamed(key: str, renames: list[tuple[str, str]]) -> str:
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def original_key(key: str) -> str:
    """Our parameter name -> LDM/SGM's (without the ``first_stage_model.`` prefix)."""
    return _renamed(key, ORIGINAL_RENAMES)


MASKED_IMAGE_BRANCH = "decoder.condition_encoder."  # AsymmetricAutoencoderKL's inpainting input; ours has none


def diffusers_key(key: str, num_levels: int) -> str:
    """Our parameter name -> diffusers'. Diffusers numbers decoder levels in running order, deepest first."""
    key = re.sub(r"^decoder\.levels\.(\d+)\.", lambda m: f"decoder.up_blocks.{num_levels - 1 - int(m[1])}.", key)
    return _renamed(key, DIFFUSERS_RENAMES)


# --- copying weights ---------------------------------------------------------------------------------------

def _fit(tensor: Tensor, shape: torch.Size) -> Tensor | None:
    """``tensor`` in ``shape``, allowing a 1x1 conv on one side for a Linear on the other; None if it cannot."""
    if tensor.shape == shape:
        return tensor
    if tensor.shape[:2] == shape[:2] and all(d == 1 for d in (*tensor.shape[2:], *shape[2:])):
        return tensor.reshape(shape)
    return None


def describe(config: AutoencoderConfig) -> str:
    """A named config's name (``VQ_F8``), else the config itself."""
    names = [name for name, named in NAMED_CONFIGS.items() if named == config]
    return names[0] if names else repr(config)


def _load_mapped(ae: Autoencoder, theirs: StateDict, key_of: Callable[[str], str],
                 fitting_config: Callable[[], str]) -> Autoencoder:
    """Copy ``theirs[key_of(k)]`` into each parameter ``k`` of ``ae``. Entries outside the autoencoder (a
    discriminator's ``loss.*``, the U-Net, EMA copies) are ignored; a missing, mis-shaped or extra one is an error."""
    converted = {}
    for key, ours in ae.state_dict().items():
        their_key = key_of(key)
        if their_key not in theirs:
            raise KeyError(f"the checkpoint has no {their_key!r} (for our {key}); it is not a "
                           f"{describe(ae.config)} autoencoder. It looks like: {fitting_config()}.")
        tensor = _fit(theirs[their_key], ours.shape)
        if tensor is None:
            raise ValueError(f"{their_key!r} has shape {tuple(theirs[their_key].shape)} but {describe(ae.config)} "
                             f"expects {tuple(ours.shape)}. The checkpoint looks like {fitting_config()}: "
                             "build the autoencoder with that config.")
        converted[key] = tensor
    wanted = {key_of(key) for key in converted}
    if unexpected := sorted(k for k in theirs if k.startswith(MODEL_PARTS) and k not in wanted):
        raise ValueError(f"the checkpoint has {len(unexpected)} weight(s) that a {describe(ae.config)} autoencoder "
                         f"lacks (first: {unexpected[0]!r}). It looks like {fitting_config()}.")
    ae.load_state_dict(converted, assign=True)
    return ae


# --- original LDM / SGM layout -----------------------------------------------------------------------------

def first_stage_weights(state_dict: StateDict) -> dict[str, Tensor]:
    """The autoencoder's part of a full LDM / SD / SDXL checkpoint (prefix removed); bare ones pass through."""
    if not any(k.startswith(ORIGINAL_PREFIX) for k in state_dict):
        return dict(state_dict)
    return {k.removeprefix(ORIGINAL_PREFIX): v for k, v in state_dict.items() if k.startswith(ORIGINAL_PREFIX)}


def _level_indices(state_dict: StateDict, pattern: str) -> list[int]:
    return sorted({int(m[1]) for k in state_dict if (m := re.match(pattern, k))})


def config_from_original(state_dict: StateDict, resolution: int = 256) -> AutoencoderConfig:
    """The AutoencoderConfig whose shapes an original (prefix-free) first-stage state dict has."""
    sd = state_dict
    ch = sd["encoder.conv_in.weight"].shape[0]
    levels = _level_indices(sd, r"encoder\.down\.(\d+)\.")
    codebook = sd.get("quantize.embedding.weight")
    return AutoencoderConfig(
        ch=ch,
        ch_mult=tuple(sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in levels),
        num_res_blocks=len(_level_indices(sd, r"encoder\.down\.0\.block\.(\d+)\.")),
        attn_resolutions=tuple(resolution // 2**i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in sd),
        resolution=resolution,
        in_channels=sd["encoder.conv_in.weight"].shape[1],
        out_channels=sd["decoder.conv_out.weight"].shape[0],
        z_channels=sd["post_quant_conv.weight"].shape[0],
        embed_dim=sd["post_quant_conv.weight"].shape[1],
        regularizer=Regularizer.KL if codebook is None else Regularizer.VQ,
        codebook_size=None if codebook is None else codebook.shape[0],
        mid_attention="encoder.mid.attn_1.q.weight" in sd)


def _guess(state_dict: StateDict) -> Callable[[], str]:
    """What the checkpoint looks like, worked out only when an error needs it."""
    def guess() -> str:
        if any(".down_blocks." in k for k in state_dict):
            return "a diffusers AutoencoderKL: load it with diffusers and call autoencoder_from_diffusers"
        try:
            return describe(config_from_original(state_dict))
        except (KeyError, ValueError) as problem:
            return f"no LDM autoencoder at all ({problem})"
    return guess


def autoencoder_from_original(state_dict: StateDict, config: AutoencoderConfig | None = None) -> Autoencoder:
    """Our autoencoder with the weights of an LDM/SGM ``first_stage_model`` (config inferred if None)."""
    weights = first_stage_weights(state_dict)
    config = config or config_from_original(weights)
    with torch.device("meta"):
        ae = Autoencoder(config)
    return _load_mapped(ae, weights, original_key, _guess(weights))


def load_original_autoencoder(path: str | Path, config: AutoencoderConfig | None = None) -> Autoencoder:
    """Read a local ``.safetensors`` / ``.ckpt`` (a full SD/SDXL/LDM checkpoint or a VAE alone)."""
    return autoencoder_from_original(read_state_dict(path), config)


def original_state_dict(ae: Autoencoder, prefix: str = ORIGINAL_PREFIX) -> dict[str, Tensor]:
    """Our weights under LDM's names; attention projections become 1x1 convs, as LDM stores them."""
    out = {}
    for key, tensor in ae.state_dict().items():
        their_key = original_key(key)
        is_attention_projection = re.search(r"\.(q|k|v|proj_out)\.weight$", their_key)
        out[prefix + their_key] = tensor[..., None, None] if is_attention_projection else tensor
    return out


# --- diffusers ---------------------------------------------------------------------------------------------

def config_from_diffusers(vae: AutoencoderKL, resolution: int = 256) -> AutoencoderConfig:
    """The AutoencoderConfig of a diffusers ``AutoencoderKL`` or ``AsymmetricAutoencoderKL`` (LDM-style ones only)."""
    cfg = vae.config
    asymmetric = "up_block_out_channels" in cfg
    widths = list(cfg.down_block_out_channels if asymmetric else cfg.block_out_channels)
    decoder_widths = list(cfg.up_block_out_channels) if asymmetric else widths
    wanted = {"norm_num_groups": 32, "act_fn": "silu"} | ({} if asymmetric else {"use_quant_conv": True,
                                                                               "use_post_quant_conv": True})
    problems = [f"{name}={cfg[name]!r} (needs {value!r})" for name, value in wanted.items() if cfg[name] != value]
    if any(w % widths[0] for w in widths):
        problems.append(f"block_out_channels={widths} (need multiples of the first)")
    if [w * widths[0] for w in decoder_widths] != [w * decoder_widths[0] for w in widths]:
        problems.append(f"up_block_out_channels={decoder_widths} (need the multiples of down_block_out_channels)")
    if problems:
        raise ValueError(f"this {type(vae).__name__} is not an LDM autoencoder: {', '.join(problems)}.")
    blocks = cfg.layers_per_down_block if asymmetric else cfg.layers_per_block
    decoder_blocks = cfg.layers_per_up_block if asymmetric else blocks
    return AutoencoderConfig(
        ch=widths[0], ch_mult=tuple(w // widths[0] for w in widths), num_res_blocks=blocks,
        attn_resolutions=tuple(resolution // 2**i for i, kind in enumerate(cfg.down_block_types)
                               if kind.startswith("Attn")),
        resolution=resolution, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
        z_channels=cfg.latent_channels, embed_dim=cfg.latent_channels,
        mid_attention=True if asymmetric else cfg.mid_block_add_attention,
        decoder_ch=decoder_widths[0] if decoder_widths[0] != widths[0] else None,
        decoder_num_res_blocks=decoder_blocks if decoder_blocks != blocks else None)


def autoencoder_from_diffusers(vae: AutoencoderKL) -> Autoencoder:
    """Our autoencoder with the weights of a diffusers ``AutoencoderKL`` or ``AsymmetricAutoencoderKL`` (without the
    latter's mask-conditioned inpainting branch). Its ``scaling_factor`` is the diffusion model's business: read it
    from ``vae.config.scaling_factor``."""
    config = config_from_diffusers(vae)
    with torch.device("meta"):
        ae = Autoencoder(config)
    theirs = {k: v.detach().clone() for k, v in vae.state_dict().items()  # ours must not alias vae's weights
              if not k.startswith(MASKED_IMAGE_BRANCH)}
    return _load_mapped(ae, theirs, lambda k: diffusers_key(k, len(config.ch_mult)),
                        lambda: describe(config))


def autoencoder_to_diffusers(ae: Autoencoder, scaling_factor: float = 0.18215) -> AutoencoderKL:
    """A diffusers ``AutoencoderKL`` with our weights. ``scaling_factor``: SD 1.x/2.x 0.18215, SDXL 0.13025. A
    decoder wider or deeper than its encoder becomes diffusers' ``AsymmetricAutoencoderKL`` (made for Asymmetric
    VQGAN); its mask-conditioned branch for inpainting stays at its initial weights, unused when decoding without a
    mask, as pipelines do."""
    from diffusers import AsymmetricAutoencoderKL, AutoencoderKL

    c = ae.config
    if c.regularizer is not Regularizer.KL or c.z_channels != c.embed_dim:
        raise ValueError(f"diffusers' AutoencoderKL holds KL autoencoders with z_channels == embed_dim; "
                         f"got {c.regularizer.name} with {c.z_channels} and {c.embed_dim}.")
    levels = range(len(c.ch_mult))
    down_blocks = tuple(("AttnDownEncoderBlock2D" if c.has_attention(i) else "DownEncoderBlock2D") for i in levels)
    up_blocks = tuple(("AttnUpDecoderBlock2D" if c.has_attention(i) else "UpDecoderBlock2D") for i in reversed(levels))
    shared = dict(in_channels=c.in_channels, out_channels=c.out_channels, down_block_types=down_blocks,
                  up_block_types=up_blocks, latent_channels=c.embed_dim, sample_size=c.resolution,
                  scaling_factor=scaling_factor)
    if c.symmetric:
        vae = AutoencoderKL(**shared, block_out_channels=tuple(c.width(i) for i in levels),
                            layers_per_block=c.num_res_blocks, mid_block_add_attention=c.mid_attention)
    elif not c.mid_attention:
        raise ValueError("diffusers' AsymmetricAutoencoderKL always has mid-block attention; this asymmetric "
                         "autoencoder has none (mid_attention=False). Train it with mid_attention=True to convert.")
    else:
        vae = AsymmetricAutoencoderKL(**shared, down_block_out_channels=tuple(c.width(i) for i in levels),
                                      layers_per_down_block=c.num_res_blocks,
                                      up_block_out_channels=tuple(c.decoder_width(i) for i in levels),
                                      layers_per_up_block=c.decoder_blocks - 1)
    theirs = {diffusers_key(k, len(c.ch_mult)): v for k, v in ae.state_dict().items()}
    missing, unexpected = vae.load_state_dict(theirs, strict=False)
    missing = [key for key in missing if not key.startswith(MASKED_IMAGE_BRANCH)]
    if missing or unexpected:
        raise RuntimeError(f"key maps out of step with diffusers: missing {missing[:3]}, unexpected {unexpected[:3]}")
    reference = next(ae.parameters())
    vae = vae.to(reference.device)
    return vae if reference.dtype == torch.float32 else vae.to(dtype=reference.dtype)
