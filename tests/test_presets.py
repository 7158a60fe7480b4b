"""Presets: exact parameter counts of the real models (meta device), the wiring between their networks, the
small lab models actually running, and ``ldm-lab params``."""

import json
from dataclasses import replace

import pytest
import torch

from ldm_lab.cli import main
from ldm_lab.conditioning import Output
from ldm_lab.nn.embeddings import fourier_features
from ldm_lab.presets import (PRESETS, Prediction, Schedule, build_preset, conditioner_config, get_preset,
                             parameter_counts)
from ldm_lab.presets.emoji import LAB_EMOJI_UNET
from ldm_lab.presets.lab import LAB_AUTOENCODER, LAB_EMOJI_AUTOENCODER


# DESIGN.md section 5 (measured from the official configs).
UNET = {"sd15": 859_520_964, "sd21": 865_910_724, "sd21-v": 865_910_724, "sdxl-base": 2_567_463_684,
        "sdxl-turbo": 2_567_463_684, "sdxl-refiner": 2_259_526_660}
VAE = 83_653_863
CLIP_L, OPENCLIP_H, OPENCLIP_BIGG = 123_060_480, 354_032_640, 694_659_840
FIRST_STAGES = {"kl-f4": 55_312_063, "kl-f8": VAE, "kl-f16": 69_610_963, "kl-f32": 103_880_131,
                "vq-f4": 55_322_782, "vq-f4-noattn": 53_219_486, "vq-f8": 67_717_295, "vq-f16": 69_593_371}
TEXT = {"sd15": CLIP_L, "sd21": OPENCLIP_H, "sd21-v": OPENCLIP_H, "sdxl-base": CLIP_L + OPENCLIP_BIGG,
        "sdxl-turbo": CLIP_L + OPENCLIP_BIGG, "sdxl-refiner": OPENCLIP_BIGG}


@pytest.mark.parametrize("name", UNET)
def test_stable_diffusion_counts_and_totals(name):
    counts = parameter_counts(name)
    assert counts["unet"] == UNET[name]
    assert counts["vae"] == VAE
    assert counts["total"] == UNET[name] + VAE + TEXT[name]


@pytest.mark.parametrize("name", FIRST_STAGES)
def test_ldm_first_stage_counts(name):
    assert parameter_counts(name) == {"first_stage": FIRST_STAGES[name], "total": FIRST_STAGES[name]}


def test_required_presets_exist_with_their_training_setup():
    required = {"sd15", "sd21", "sd21-v", "sdxl-base", "sdxl-refiner", "sdxl-turbo", *FIRST_STAGES,
                "lab-pixel", "lab-emoji", "lab-class"}
    assert required <= set(PRESETS)
    assert get_preset("sd21-v").prediction is Prediction.V and get_preset("sd21").prediction is Prediction.EPS
    assert get_preset("sd21-v").resolution == (768, 768) and get_preset("sdxl-base").resolution == (1024, 1024)
    assert get_preset("sd15").latent_scale == 0.18215 and get_preset("sdxl-refiner").latent_scale == 0.13025
    assert get_preset("sdxl-turbo").unet == get_preset("sdxl-base").unet
    assert all(p.schedule is Schedule.SCALED_LINEAR for n, p in PRESETS.items() if n.startswith("sd"))
    assert all(p.description for p in PRESETS.values())


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.unet is not None])
def test_networks_fit_together(name):
    """The context is the text encoders' widths side by side; the latent is the autoencoder's; SDXL's vector
    is the pooled text plus 256 Fourier features per micro-conditioning scalar."""
    preset = get_preset(name)
    unet, encoders = preset.unet, preset.text_encoders.values()
    if encoders:
        assert unet.context_dim == sum(e.width for e in encoders)
    if preset.autoencoder is not None:
        concat = unet.in_channels - preset.autoencoder.embed_dim  # inpainting: mask + masked-image latent
        conditions = conditioner_config(preset).widths().get(Output.CONCAT, 0)  # lab-seg: the class map
        assert unet.out_channels == preset.autoencoder.embed_dim
        assert concat in (0, preset.autoencoder.embed_dim + 1, conditions)
    if "inpaint" not in name:  # the inpainting inputs are not conditions of the conditioner
        conditioner_config(preset).check(unet, unet.out_channels)
    if unet.y_dim is not None:
        pooled = sum(e.projection_dim for e in encoders if e.return_pooled)
        scalars, remainder = divmod(unet.y_dim - pooled, 256)
        assert remainder == 0 and scalars in (5, 6), unet.y_description


def test_sdxl_vector_condition_is_pooled_bigg_and_six_scalars():
    unet = get_preset("sdxl-base").unet
    assert unet.y_dim == 1280 + fourier_features(torch.zeros(1, 6)).shape[1] == 2816
    assert get_preset("sdxl-refiner").unet.y_dim == 1280 + 5 * 256


# U-Net parameter limits of the lab models: 6 M, except lab-emoji's (6.6 M: distilled from the CPU recipe's 16.3 M
# U-Net, which at a fixed CPU budget beats the 1.2 M U-Nets; ldm_lab.presets.emoji), which must train on a laptop.
LAB_UNET_LIMITS = {"lab-emoji": 20_000_000}
LAB_EMOJI_UNET_PARAMETERS = 6.6e6
LAB_EMOJI_LARGE_UNET_PARAMETERS = 16.3e6


def test_lab_emoji_is_the_cpu_recipes_wider_unet_narrowed_at_4x4_on_its_own_first_stage():
    preset, large = get_preset("lab-emoji"), get_preset("lab-emoji-large")
    assert preset.unet == LAB_EMOJI_UNET and preset.autoencoder == large.autoencoder == LAB_EMOJI_AUTOENCODER
    assert LAB_EMOJI_AUTOENCODER == replace(LAB_AUTOENCODER, decoder_ch=64, decoder_num_res_blocks=2)  # same encoder
    assert (LAB_EMOJI_UNET.model_channels, LAB_EMOJI_UNET.channel_mult) == (64, (1, 2, 2))
    assert LAB_EMOJI_UNET == large.unet.replace(channel_mult=(1, 2, 2))   # only the 4x4 level is narrower
    assert parameter_counts("lab-emoji")["unet"] == pytest.approx(LAB_EMOJI_UNET_PARAMETERS, rel=0.01)
    assert parameter_counts("lab-emoji-large")["unet"] == pytest.approx(LAB_EMOJI_LARGE_UNET_PARAMETERS, rel=0.01)
    assert all(parameter_counts(n)["unet"] < 6_000_000 for n in ("lab-sdxl", "lab-layout", "lab-seg", "lab-fmnist"))


@pytest.mark.parametrize("name", ["lab-emoji", "lab-sdxl", "lab-layout", "lab-seg", "lab-fmnist"])
def test_the_recipes_lab_models_predict_v(name):
    assert get_preset(name).prediction is Prediction.V


@pytest.mark.parametrize("name", ["lab-pixel", "lab-class", "lab-emoji", "lab-sdxl", "lab-fmnist", "lab-layout",
                                  "lab-seg"])
def test_lab_presets_are_small_and_run(name):
    preset = get_preset(name)
    modules = build_preset(name, device="cpu")
    assert 100_000 < parameter_counts(name)["unet"] < LAB_UNET_LIMITS.get(name, 6_000_000)
    unet = modules["unet"].eval()
    c = preset.unet
    height, width = preset.resolution
    if preset.autoencoder is not None:
        height, width = (s // preset.autoencoder.downsampling_factor for s in preset.resolution)
    x = torch.randn(2, c.in_channels, height, width)
    context = torch.randn(2, 7, c.context_dim) if c.context_dim else None
    y = torch.tensor([0, c.num_classes - 1]) if c.num_classes else (torch.randn(2, c.y_dim) if c.y_dim else None)
    with torch.no_grad():
        assert unet(x, torch.tensor([1, 999]), context, y=y).shape == (2, c.out_channels, height, width)


def test_unknown_preset_suggests_the_closest():
    with pytest.raises(ValueError, match=r"'sdxl-bse'.*Did you mean 'sdxl-base'.*Valid presets: sd15"):
        get_preset("sdxl-bse")


def test_meta_build_allocates_nothing():
    modules = build_preset("sdxl-base", device="meta")
    assert set(modules) == {"unet", "vae", "clip_l", "openclip_bigg"}
    assert all(p.is_meta for p in modules.parameters())


def test_params_command_json(capsys):
    assert main(["params", "sd15", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"unet": UNET["sd15"], "vae": VAE, "clip_l": CLIP_L,
                                                    "total": UNET["sd15"] + VAE + CLIP_L}


def test_params_command_table_and_errors(capsys):
    assert main(["params", "vq-f4"]) == 0
    out = capsys.readouterr().out
    assert "first_stage" in out and "55,322,782" in out
    assert main(["params", "sd1.5"]) == 2
    assert "Did you mean 'sd15'" in capsys.readouterr().err
