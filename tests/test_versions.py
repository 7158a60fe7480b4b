"""The Stable Diffusion versions table and the per-level parameter split, read off the presets on the meta
device. Expected counts are diffusers' (UNet2DConditionModel / AutoencoderKL / CLIPTextModel of the released
checkpoints), which tests/test_presets.py pins for the presets themselves."""

import math

import pytest

from ldm_lab.presets import parameter_counts
from ldm_lab.versions import (SD_VERSIONS, architecture_table, heads_description, layer_read, level_parameters,
                              plot_level_parameters)
from ldm_lab.presets import get_preset

UNET = {"sd15": 859_520_964, "sd15-inpaint": 859_535_364, "sd21": 865_910_724, "sd21-v": 865_910_724,
        "sdxl-base": 2_567_463_684, "sdxl-refiner": 2_259_526_660, "sdxl-turbo": 2_567_463_684}
VAE = 83_653_863
CLIP_L, OPENCLIP_H, OPENCLIP_BIGG = 123_060_480, 354_032_640, 694_659_840


@pytest.fixture(scope="module")
def table():
    return architecture_table()


def test_parameter_counts_are_the_released_models(table):
    assert table.loc[list(UNET), "unet_parameters"].to_dict() == UNET
    assert (table.loc[list(SD_VERSIONS), "vae_parameters"] == VAE).all()
    assert table.loc["sd15", "text_parameters"] == CLIP_L
    assert table.loc["sd21", "text_parameters"] == OPENCLIP_H
    assert table.loc["sdxl-base", "text_parameters"] == CLIP_L + OPENCLIP_BIGG
    assert table.loc["sdxl-refiner", "text_parameters"] == OPENCLIP_BIGG
    # the inpainting model differs only in conv_in: 5 more input channels x 320 filters x 3 x 3
    assert UNET["sd15-inpaint"] - UNET["sd15"] == 5 * 320 * 9


def test_what_changed_between_versions(table):
    row = table.loc
    assert (row["sd15", "text_towers"], row["sd15", "layer_read"]) == ("CLIP ViT-L/14", "last, final norm")
    assert row["sd21", "text_towers"] == "OpenCLIP ViT-H/14" and row["sd21", "layer_read"].startswith("penultimate")
    assert row["sdxl-base", "text_towers"] == "CLIP ViT-L/14 + OpenCLIP ViT-bigG/14"
    assert [row[v, "context_width"] for v in ("sd15", "sd21", "sdxl-base")] == [768, 1024, 2048]
    assert [row[v, "vector_width"] for v in ("sd15", "sdxl-base", "sdxl-refiner")] == [0, 2816, 2560]
    assert [row[v, "projection"] for v in ("sd15", "sd21")] == ["1x1 conv", "linear"]
    assert row["sd15", "heads"] == "8 heads, 40/80/160 wide" and row["sd21", "heads"] == "5/10/20 heads, 64 wide"
    assert row["sdxl-base", "transformer_depth"] == "(0, 2, 10) + middle 10"
    assert [row[v, "input_channels"] for v in ("sd15", "sd15-inpaint")] == [4, 9]
    assert [row[v, "prediction"] for v in ("sd21", "sd21-v", "lab-emoji")] == ["eps", "v", "v"]
    assert [row[v, "resolution"] for v in ("sd15", "sd21-v", "sdxl-base")] == ["512x512", "768x768", "1024x1024"]
    assert row["sdxl-base", "latent"] == "4x128x128"
    assert row["sdxl-base", "latent_scale"] == 0.13025 and math.isnan(row["lab-emoji", "latent_scale"])


@pytest.mark.parametrize("version", ["sd15", "sd21", "sdxl-base", "lab-emoji"])
def test_level_parameters_add_up_to_the_unet(version):
    levels = level_parameters(version)
    assert levels["total"].sum() == parameter_counts(version)["unet"]
    assert (levels["total"] == levels["convolution"] + levels["transformer"]).all()


def test_level_parameters_show_where_the_versions_differ():
    sd15, sdxl = level_parameters("sd15"), level_parameters("sdxl-base")
    assert sd15.loc["level 3", "transformer"] == 0  # SD 1's deepest level has no attention
    assert sdxl.loc["level 0", "transformer"] == 0 and "level 3" not in sdxl.index  # SDXL: 3 levels, none at 128²
    assert sdxl.loc["level 2", "transformer"] > 0.6 * sdxl["total"].sum()  # the 10-block transformers hold most
    assert list(sdxl["side"]) == [128, 64, 32, 32, 128]


def test_readout_descriptions():
    assert layer_read(get_preset("sdxl-refiner").text_encoders["openclip_bigg"]) == \
        "penultimate, no final norm, + pooled"
    assert heads_description(get_preset("sdxl-base").unet) == "10/20 heads, 64 wide"


def test_a_first_stage_preset_is_refused_with_the_versions_to_pick():
    with pytest.raises(ValueError, match="sd15"):
        architecture_table(["kl-f8"])


def test_level_figure_has_a_panel_per_version(tmp_path):
    fig = plot_level_parameters(["sd15", "sdxl-base"], save=tmp_path / "levels.png")
    assert len(fig.axes) == 2 and (tmp_path / "levels.png").stat().st_size > 0
