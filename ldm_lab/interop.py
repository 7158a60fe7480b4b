"""Our models in other people's tools, and their checkpoints in ours.

    export_to_diffusers(model, "exported/lab-emoji")        # a folder StableDiffusionPipeline.from_pretrained reads
    images = sample_with_diffusers("exported/lab-emoji", ["red apple"], steps=10, guidance_scale=3.0, seed=0)
    images = generate(model, prompts=["red apple"], settings=diffusers_settings(steps=10, guidance_scale=3.0, seed=0))
    networks = load_original_checkpoint("v1-5-pruned-emaonly.safetensors", "sd15")   # a real SD checkpoint

The exported folder is diffusers' Stable Diffusion layout: ``unet/`` and ``vae/`` (converted by
``ldm_lab.convert``), ``scheduler/`` (our noise schedule and prediction type as a DDIMScheduler config),
``text_encoder/`` as a transformers ``CLIPTextModel`` and ``tokenizer/`` as a ``CLIPTokenizer`` whose
``vocab.json`` and ``merges.txt`` are written from the CLIP byte-pair tokenizer bundled with open_clip (the same
49,408 tokens; only the names of <start> and <end> differ). diffusers and transformers are imported only here, in
the functions that need them (diffusers is a test dependency: ``pip install -e ".[test]"``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ldm_lab.convert.autoencoder import autoencoder_from_original, autoencoder_to_diffusers, first_stage_weights
from ldm_lab.convert.files import read_state_dict
from ldm_lab.convert.text import CHECKPOINT_FAMILIES, TextEncoderSlot, hf_clip_key, text_encoders_from_original
from ldm_lab.convert.unet import load_original_unet, unet_to_diffusers
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.schedules import Schedule
from ldm_lab.diffusion.settings import SamplingSettings
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.nn.text import Activation, TextEncoder, TextEncoderConfig, bpe_tokenizer
from ldm_lab.presets import Preset, get_preset

# diffusers' names for what the U-Net predicts, and for our beta schedules (with their end points).
DIFFUSERS_PREDICTION = {Prediction.EPS: "epsilon", Prediction.V: "v_prediction", Prediction.X0: "sample"}
DIFFUSERS_BETAS = {Schedule.SCALED_LINEAR: ("scaled_linear", 0.00085, 0.012), Schedule.LINEAR: ("linear", 1e-4, 0.02)}
# transformers' names of CLIP's special tokens (open_clip calls them <start_of_text> and <end_of_text>).
START, END = "<|startoftext|>", "<|endoftext|>"
TRANSFORMERS_ACTIVATION = {Activation.GELU: "gelu", Activation.QUICK_GELU: "quick_gelu"}


# --- the scheduler --------------------------------------------------------------------------------------------

def scheduler_config(preset: str | Preset) -> dict[str, Any]:
    """A ``DDIMScheduler`` config equal to the preset's training noise and parameterisation, sampling as our
    ``"ddim"`` sampler with trailing timesteps (the package's default spacing; Lin et al. 2023, Tab. 2) and its last
    step landing on ab_0 (``set_alpha_to_one=False``, LDM's DDIM and SD's config)."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    if preset.schedule not in DIFFUSERS_BETAS:
        raise ValueError(f"{preset.name} trains with the {preset.schedule.value} schedule; export supports "
                         f"{', '.join(s.value for s in DIFFUSERS_BETAS)}, whose betas diffusers computes as we do.")
    beta_schedule, beta_start, beta_end = DIFFUSERS_BETAS[preset.schedule]
    return {"num_train_timesteps": preset.num_train_timesteps, "beta_schedule": beta_schedule,
            "beta_start": beta_start, "beta_end": beta_end,
            "prediction_type": DIFFUSERS_PREDICTION[Prediction(preset.prediction)], "clip_sample": False,
            "set_alpha_to_one": False, "timestep_spacing": "trailing",
            "steps_offset": 1}  # trailing spacing ignores it; 1 keeps StableDiffusionPipeline from rewriting it


def diffusers_settings(steps: int, guidance_scale: float, seed: int) -> SamplingSettings:
    """Our sampling settings that draw what the exported folder's scheduler draws: DDIM, trailing timesteps.
    Equal images need ``steps`` dividing the training timesteps (1000), where DDIMScheduler's step from t to
    t - 1000 // steps lands on the next timestep it visits."""
    return SamplingSettings(sampler="ddim", steps=steps, guidance_scale=guidance_scale, seed=seed,
                            timestep_spacing="trailing")


# --- the tokenizer and the text encoder -----------------------------------------------------------------------

def write_clip_tokenizer(folder: str | Path, pad_token_id: int, context_length: int = 77) -> Path:
    """A transformers ``CLIPTokenizer`` folder from open_clip's bundled CLIP BPE: ``vocab.json`` (token -> id),
    ``merges.txt`` (merge rules by rank, after transformers' version line), the special tokens and padding.

    A tower padded with id 0 (open_clip's padding, SD 2's) gets ``pad_token="!"``, as diffusers' SD 2 tokenizer:
    transformers then reads a "!" standing alone in a prompt as the pad token (id 0, where open_clip's BPE gives
    "!</w>", 256), so such prompts tokenize differently; every other prompt gets our ids."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = bpe_tokenizer()
    renamed = {bpe.decoder[bpe.sot_token_id]: START, bpe.decoder[bpe.eot_token_id]: END}
    vocab = {renamed.get(token, token): index for token, index in bpe.encoder.items()}
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(pair) for pair in merges) + "\n",
                                       encoding="utf-8")
    pad = renamed.get(bpe.decoder[pad_token_id], bpe.decoder[pad_token_id])
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": context_length, "bos_token": START,
              "eos_token": END, "unk_token": END, "pad_token": pad, "do_lower_case": True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}, indent=2),
        encoding="utf-8")
    return folder


def check_pipeline_readout(config: TextEncoderConfig) -> None:
    """StableDiffusionPipeline reads the last hidden state of its CLIPTextModel after the final LayerNorm; a tower
    read at an earlier block fits by cutting the blocks after it (as SD 2's diffusers text encoder has 23 of
    ViT-H's 24), but a context without the final norm (SDXL) does not."""
    if not config.final_norm:
        raise ValueError("this text tower's context skips the final LayerNorm (SDXL's readout), which "
                         "StableDiffusionPipeline cannot reproduce; export SD 1.x / 2.x-style models (a single "
                         "tower, final norm on), or use StableDiffusionXLPipeline's layout.")


def text_encoder_state_dict(encoder: TextEncoder) -> dict[str, Tensor]:
    """Our tower under transformers' ``CLIPTextModel`` names, cut after the block the context is read from:
    open_clip's fused q/k/v input projection split into three, the text projection left out (the U-Net reads
    the hidden states, not the pooled embedding)."""
    config = encoder.config
    ours = {k: v for k, v in encoder.state_dict().items() if k != "tower.text_projection"}
    theirs = {}
    for key, tensor in ours.items():
        if key.startswith("tower.transformer.resblocks."):
            if int(key.split(".")[3]) >= config.context_depth:
                continue
        if ".attn.in_proj_" in key:
            for name, part in zip("qkv", tensor.chunk(3)):
                theirs[hf_clip_key(key).replace(".q_proj.", f".{name}_proj.")] = part.clone()
        else:
            theirs[hf_clip_key(key)] = tensor.clone()
    return theirs


def text_encoder_to_transformers(encoder: TextEncoder) -> Any:
    """A transformers ``CLIPTextModel`` whose ``last_hidden_state`` is our context (same tokens, same weights)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = encoder.config
    check_pipeline_readout(config)
    bpe = bpe_tokenizer()
    hf_config = CLIPTextConfig(
        vocab_size=encoder.tower.token_embedding.num_embeddings, hidden_size=config.width,
        intermediate_size=encoder.tower.transformer.resblocks[0].mlp.c_fc.out_features,
        num_hidden_layers=config.context_depth, num_attention_heads=config.num_heads,
        max_position_embeddings=config.context_length, hidden_act=TRANSFORMERS_ACTIVATION[config.activation],
        layer_norm_eps=encoder.tower.ln_final.eps, bos_token_id=bpe.sot_token_id, eos_token_id=bpe.eot_token_id,
        pad_token_id=config.pad_token_id, projection_dim=config.projection_dim or config.width)
    model = CLIPTextModel(hf_config)
    weights = text_encoder_state_dict(encoder)
    if not any(k.startswith("text_model.") for k in model.state_dict()):  # transformers 5 drops the prefix
        weights = {k.removeprefix("text_model."): v for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"the text tower did not map onto CLIPTextModel: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}; the key renames in ldm_lab.convert.text need updating.")
    return model.eval()


# --- a model to export without training -----------------------------------------------------------------------

def randomly_initialised(preset: str = "lab-emoji", seed: int = 0, latent_scale: float = 0.8) -> LatentDiffusion:
    """A model of ``preset`` with every weight drawn at random (std 1 / sqrt(fan-in), so the zero-initialised
    output layers carry signal too) and a fixed latent scale: what an export round trip needs to check the
    plumbing, without any training or shipped weights."""
    model = LatentDiffusion(LatentDiffusionConfig(preset)).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            fan_in = parameter[0].numel() if parameter.ndim > 1 else 50
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * fan_in ** -0.5)
        model.latent_scale.fill_(latent_scale)
    return model


# --- the whole pipeline ---------------------------------------------------------------------------------------

def text_encoder_of(model: LatentDiffusion) -> TextEncoder:
    """The one text tower of a text-to-image model (StableDiffusionPipeline has exactly one)."""
    towers = [m for m in model.conditioner.modules() if isinstance(m, TextEncoder)]
    if len(towers) != 1 or model.condition_keys != ("caption",):
        raise ValueError(f"{model.preset.name} is conditioned on {model.conditioner.config.description or 'nothing'}"
                         f" with {len(towers)} text tower(s); StableDiffusionPipeline takes a prompt through one "
                         "tower. Export a text-to-image model such as lab-emoji.")
    return towers[0]


def _float_cpu_copy(module: nn.Module) -> nn.Module:
    """A float32 CPU copy, leaving the caller's model where and as it is."""
    return copy.deepcopy(module).float().cpu()


def export_to_diffusers(model: LatentDiffusion, folder: str | Path) -> Path:
    """Write ``model`` as a diffusers Stable Diffusion folder (``model_index.json``, ``unet/``, ``vae/``,
    ``scheduler/``, ``text_encoder/``, ``tokenizer/``) that ``StableDiffusionPipeline.from_pretrained`` loads."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    encoder = text_encoder_of(model)
    if model.first_stage is None:
        raise ValueError(f"{model.preset.name} works in pixel space; StableDiffusionPipeline needs a VAE.")
    if model.needs_latent_scale:
        raise ValueError("the model's latent scale has not been measured (it is NaN): load trained weights, or call "
                         "model.set_latent_scale_from(images) first; the VAE's scaling_factor records it.")
    folder = Path(folder)
    tokenizer = CLIPTokenizer.from_pretrained(
        write_clip_tokenizer(folder / "tokenizer", encoder.config.pad_token_id, encoder.config.context_length))
    unet = unet_to_diffusers(_float_cpu_copy(model.unet))
    unet.register_to_config(sample_size=model.latent_shape[1])
    pipeline = StableDiffusionPipeline(
        vae=autoencoder_to_diffusers(_float_cpu_copy(model.first_stage), scaling_factor=float(model.latent_scale)),
        text_encoder=text_encoder_to_transformers(_float_cpu_copy(encoder)), tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(**scheduler_config(model.preset)), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


@torch.no_grad()
def sample_with_diffusers(folder: str | Path, prompts: Sequence[str], *, steps: int, guidance_scale: float,
                          seed: int) -> Tensor:
    """Images ``[N, C, H, W]`` in [-1, 1] drawn by diffusers' own ``StableDiffusionPipeline`` from an exported
    folder, one per prompt, on the CPU, with a generator seeded ``seed`` (the start noise our ``generate`` draws
    from ``SamplingSettings(seed=seed)``)."""
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(list(prompts), num_inference_steps=steps, guidance_scale=guidance_scale,
                      generator=torch.Generator().manual_seed(seed), output_type="pt").images
    return images * 2 - 1


# --- the reverse direction: an original SD checkpoint into a preset -------------------------------------------

def text_slots_for(state: Mapping[str, Tensor], preset: Preset) -> tuple[TextEncoderSlot, ...]:
    """Where ``state`` keeps the preset's text towers: the checkpoint family whose key prefixes are present and
    whose number of towers matches the preset's, read with the preset's tower configs."""
    configs = list(preset.text_encoders.values())
    for family in CHECKPOINT_FAMILIES:
        if len(family) == len(configs) and all(any(k.startswith(s.prefix) for k in state) for s in family):
            return tuple(TextEncoderSlot(s.prefix, s.layout, config) for s, config in zip(family, configs))
    prefixes = [" + ".join(s.prefix for s in family) for family in CHECKPOINT_FAMILIES]
    raise ValueError(f"found none of the text-encoder layouts {prefixes} with {len(configs)} tower(s) for "
                     f"{preset.name}; is this a {preset.name} checkpoint? Pick the preset of the checkpoint's version.")


def load_original_checkpoint(checkpoint: str | Path | Mapping[str, Tensor], preset: str | Preset) -> nn.ModuleDict:
    """An original (CompVis / Stability) SD 1.x, 2.x or SDXL checkpoint — a local ``.safetensors`` / ``.ckpt``
    or its state dict — as the preset's networks, named as ``build_preset`` names them (``unet``, ``vae``, each
    text encoder). Shapes must match the preset exactly; the errors say which key does not."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    state = read_state_dict(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    networks = nn.ModuleDict({"unet": load_original_unet(state, preset.unet)})
    if preset.autoencoder is not None:
        networks[preset.autoencoder_name] = autoencoder_from_original(first_stage_weights(state), preset.autoencoder)
    if preset.text_encoders:
        towers = text_encoders_from_original(state, text_slots_for(state, preset))
        networks.update(dict(zip(preset.text_encoders, towers)))
    return networks


__all__ = ["randomly_initialised", "scheduler_config", "diffusers_settings", "write_clip_tokenizer",
           "text_encoder_state_dict", "text_encoder_to_transformers", "export_to_diffusers", "sample_with_diffusers", "load_original_checkpoint"]
