"""Interoperability: a lab text-to-image model exported to a diffusers folder samples, with diffusers' own
StableDiffusionPipeline, the images our sampler draws from the same seed; the tokenizer files give our token ids;
original SD checkpoints (small stand-ins, and full-size ones on the meta device) load into presets."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

pytest.importorskip("diffusers")

from ldm_lab.conditioning.text import chunk_tokens
from ldm_lab.convert.autoencoder import original_state_dict as autoencoder_original_state_dict
from ldm_lab.convert.text import open_clip_key
from ldm_lab.convert.unet import original_state_dict as unet_original_state_dict
from ldm_lab.interop import (diffusers_settings, export_to_diffusers, load_original_checkpoint, randomly_initialised,
                             sample_with_diffusers, scheduler_config, text_encoder_state_dict,
                             text_encoder_to_transformers, write_clip_tokenizer)
from ldm_lab.models import LatentDiffusion
from ldm_lab.nn.text import Activation, TextEncoder, TextEncoderConfig
from ldm_lab.presets import Preset, build_preset, get_preset
from ldm_lab.presets.emoji import LAB_PROMPT_UNET
from ldm_lab.presets.lab import LAB_ABLATION_AUTOENCODER
from ldm_lab.tasks.diffusion import generate

PROMPTS = ["red apple", "a smiling face with heart-eyes", "flag: United States"]


def randomised(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Every parameter drawn at random (no zero-initialised output layers, so every path carries signal)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            fan_in = parameter[0].numel() if parameter.ndim > 1 else 50
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * fan_in ** -0.5)
    return module


@pytest.fixture(scope="module")
def lab_model() -> LatentDiffusion:
    """lab-emoji's networks (v-prediction, KL-f4, lab-clip's 64-wide tower), randomly initialised: nothing
    shipped is read."""
    return randomly_initialised("lab-emoji", seed=1)


@pytest.fixture(scope="module")
def exported(lab_model, tmp_path_factory):
    return export_to_diffusers(lab_model, tmp_path_factory.mktemp("export") / "lab-emoji")


def test_diffusers_pipeline_draws_our_images_from_the_same_seed(lab_model, exported):
    theirs = sample_with_diffusers(exported, PROMPTS[:2], steps=10, guidance_scale=3.0, seed=0)
    ours = generate(lab_model, prompts=PROMPTS[:2], settings=diffusers_settings(10, 3.0, 0))
    assert ours.shape == theirs.shape == (2, 3, 64, 64)
    assert ours.std() > 0.02  # not a constant image, which any two pipelines would agree on
    assert (ours - theirs).abs().max() < 1e-3
    other_seed = generate(lab_model, prompts=PROMPTS[:2], settings=diffusers_settings(10, 3.0, 1))
    assert (other_seed - theirs).abs().max() > 1e-2  # ten times the tolerance: the comparison tells seeds apart


def test_exported_folder_has_the_stable_diffusion_layout_and_our_prediction_type(exported):
    index = json.loads((exported / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index)
    scheduler = json.loads((exported / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"  # lab-emoji predicts v
    assert scheduler["beta_schedule"] == "scaled_linear"
    assert (exported / "tokenizer" / "vocab.json").is_file() and (exported / "tokenizer" / "merges.txt").is_file()


@pytest.mark.parametrize("preset,expected", [("sd15", "epsilon"), ("sd21-v", "v_prediction"),
                                             ("lab-emoji", "v_prediction"), ("lab-pixel", "epsilon")])
def test_scheduler_config_carries_the_preset_prediction_type(preset, expected):
    config = scheduler_config(preset)
    assert config["prediction_type"] == expected
    assert config["beta_schedule"] == get_preset(preset).schedule.value


@pytest.mark.parametrize("pad_token_id", [0, 49407])
def test_tokenizer_files_give_our_token_ids(tmp_path, pad_token_id):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path, pad_token_id))
    theirs = tokenizer(PROMPTS + [""], padding="max_length", max_length=77, truncation=True,
                       return_tensors="pt").input_ids
    assert torch.equal(theirs, chunk_tokens(PROMPTS + [""], 1, 77, pad_token_id)[:, 0])


@pytest.mark.parametrize("hidden_layer", [-1, -2])
def test_transformers_text_encoder_gives_our_context(hidden_layer):
    config = TextEncoderConfig(width=32, num_layers=3, num_heads=4, activation=Activation.GELU, projection_dim=16,
                               pad_token_id=0, hidden_layer=hidden_layer)
    ours = randomised(TextEncoder(config)).eval()
    theirs = text_encoder_to_transformers(ours)
    assert theirs.config.num_hidden_layers == config.context_depth  # SD 2's penultimate layer: the last block cut
    tokens = ours.tokenize(PROMPTS)
    with torch.no_grad():
        expected = ours(tokens).context
        actual = theirs(tokens).last_hidden_state
    assert (expected - actual).abs().max() < 1e-5


def test_a_context_without_final_norm_is_refused_with_the_reason():
    config = TextEncoderConfig(width=32, num_layers=2, num_heads=4, hidden_layer=-2, final_norm=False)
    with pytest.raises(ValueError, match="final LayerNorm"):
        text_encoder_to_transformers(TextEncoder(config))


# --- original checkpoints into presets ----------------------------------------------------------------------

SMALL_TEXT = TextEncoderConfig(width=32, num_layers=2, num_heads=4)  # SD 1.x's readout and layout, small
SMALL_SD1 = Preset("small-sd1", "SD 1.x in miniature", LAB_PROMPT_UNET.replace(context_dim=32),
                   replace(LAB_ABLATION_AUTOENCODER, ch_mult=(1, 1, 1, 1)), {"clip_l": SMALL_TEXT})
SMALL_SD2 = Preset("small-sd2", "SD 2.x in miniature", LAB_PROMPT_UNET.replace(context_dim=32),
                   replace(LAB_ABLATION_AUTOENCODER, ch_mult=(1, 1, 1, 1)),
                   {"openclip_h": replace(SMALL_TEXT, activation=Activation.GELU, projection_dim=32, pad_token_id=0,
                                          hidden_layer=-2)})


def original_checkpoint(networks: torch.nn.ModuleDict, preset: Preset) -> dict[str, torch.Tensor]:
    """What CompVis / Stability save: U-Net, first stage and text tower under their original names."""
    state = {**unet_original_state_dict(networks["unet"]),
             **autoencoder_original_state_dict(networks[preset.autoencoder_name])}
    (name, encoder), = ((n, networks[n]) for n in preset.text_encoders)
    if name == "clip_l":  # SD 1.x: transformers' CLIPTextModel layout
        tower = text_encoder_state_dict(encoder)
        return {**state, **{f"cond_stage_model.transformer.{k}": v for k, v in tower.items()}}
    tower = {open_clip_key(k): v for k, v in encoder.state_dict().items()}  # SD 2.x: open_clip's layout
    return {**state, **{f"cond_stage_model.model.{k}": v for k, v in tower.items()}}


@pytest.mark.parametrize("preset", [SMALL_SD1, SMALL_SD2], ids=["sd1-layout", "sd2-layout"])
def test_an_original_checkpoint_loads_into_the_preset_with_every_weight(preset, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    networks = randomised(build_preset(preset, device="cpu"))
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in original_checkpoint(networks, preset).items()}, path)
    loaded = load_original_checkpoint(path, preset)
    assert list(loaded) == list(networks)
    for name in networks:
        ours, theirs = networks[name].state_dict(), loaded[name].state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name


def test_a_checkpoint_of_another_version_names_the_preset_to_pick():
    networks = build_preset(SMALL_SD1, device="meta")
    state = original_checkpoint(networks, SMALL_SD1)
    with pytest.raises(ValueError, match="Pick the preset"):
        load_original_checkpoint(state, replace(SMALL_SD1, text_encoders={"a": SMALL_TEXT, "b": SMALL_TEXT}))


def test_a_full_size_sd15_checkpoint_on_the_meta_device_loads_into_the_sd15_preset():
    networks = build_preset("sd15", device="meta")
    state = original_checkpoint(networks, get_preset("sd15"))
    loaded = load_original_checkpoint(state, "sd15")
    assert {name: sum(p.numel() for p in m.parameters()) for name, m in loaded.items()} == \
        {name: sum(p.numel() for p in m.parameters()) for name, m in networks.items()}
