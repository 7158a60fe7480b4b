"""What notebooks 02 and 03 show through the package: the pipeline's shapes read off real tensors, latents as
images, decoded noised latents, real-vs-real calibration rows, result tables per profile, and which shipped
checkpoints a notebook loads."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from ldm_lab import plotting
from ldm_lab.compression import (ablation_models, discriminator_start, lab_first_stage, latent_scale,
                                 real_vs_real, real_vs_real_rfid, save_table, shipped_table, validation_batch)
from ldm_lab.compression.latents import decoded_noised_latents, encode_mean, latents_as_images
from ldm_lab.diffusion import make_schedule
from ldm_lab.metrics import extract_features, to_uint8
from ldm_lab.models.pipeline import pipeline_stages
from ldm_lab.nn.autoencoder import Autoencoder, Regularizer
from ldm_lab.tasks import get_target


@pytest.fixture(scope="module")
def batch():
    return validation_batch(4)


def test_pipeline_stages_are_read_off_the_model(untrained_ldm8, batch, tmp_path):
    stages = pipeline_stages(untrained_ldm8, batch, timestep=300)
    shapes = {stage.name.split(" (")[0]: stage.shape for stage in stages}
    c, h, w = untrained_ldm8.latent_shape
    assert stages[0].shape == (4, 3, 64, 64) and shapes["latent E(x)"] == (4, c, h, w) == (4, c, 8, 8)
    assert shapes["scaled latent z0"] == shapes["noised latent z_t"] == shapes["U-Net output"] == (4, c, 8, 8)
    assert stages[-1].shape == (4, 3, 64, 64) and "t = 300" in stages[3].name
    levels = [stage.shape for stage in stages if stage.name.startswith("U-Net level")]
    assert len(levels) == len(untrained_ldm8.unet.down)
    assert [shape[-1] for shape in levels] == [8 // 2 ** i for i in range(len(levels))]
    assert shapes["U-Net middle"][-1] == levels[-1][-1]
    assert any(stage.name == "condition y" for stage in stages)  # class-conditional: the label reaches the U-Net
    fig = plotting.pipeline_diagram(stages, save=tmp_path / "pipeline.png")
    assert (tmp_path / "pipeline.png").stat().st_size > 0
    assert any("4x3x64x64" in text.get_text() for text in fig.axes[0].texts)


def test_latents_as_images_standardise_each_channel():
    latents = torch.randn(6, 4, 8, 8) * torch.tensor([1.0, 10.0, 0.1, 5.0]).reshape(1, 4, 1, 1)
    images = latents_as_images(latents)
    assert images.shape == (6, 3, 8, 8) and images.min() >= -1 and images.max() <= 1
    assert torch.allclose(images.std(dim=(0, 2, 3)), torch.full((3,), 1 / 3), atol=0.05)  # 3 std -> the range
    assert latents_as_images(torch.randn(2, 1, 4, 4)).shape == (2, 3, 4, 4)              # grey: repeated


@pytest.mark.parametrize("regularizer", list(Regularizer))
def test_decoded_noised_latents_start_at_the_reconstruction(regularizer, batch):
    torch.manual_seed(0)
    autoencoder = Autoencoder(lab_first_stage(regularizer, 8)).eval()
    image = batch["image"][0]
    scale = latent_scale(encode_mean(autoencoder, batch["image"]))
    schedule = make_schedule("scaled_linear", 1000)
    strip = decoded_noised_latents(autoencoder, image, scale, schedule, [0, 500, 999])
    assert strip.shape == (3, 3, 64, 64) and strip.min() >= -1 and strip.max() <= 1
    clean = autoencoder.decode(encode_mean(autoencoder, image[None])).clamp(-1, 1)
    errors = [(decoded - clean[0]).abs().mean().item() for decoded in strip]
    assert errors[0] < 0.05 and errors[0] < errors[1] < errors[2]  # t = 0 (ab ~ 0.999): nearly the reconstruction


def test_real_vs_real_rows_use_the_same_n_and_features(batch):
    real = batch["image"]
    features = extract_features(to_uint8(real), "lab-clip")
    images, quality = real_vs_real(features, num_resamples=5)
    assert images.dtype == torch.uint8 and len(images) == quality.num_samples == len(real)
    assert quality.fid.estimate > 0 and quality.fid.low <= quality.fid.high
    reference = real_vs_real_rfid(real, num_resamples=5)
    assert reference.estimate > 0 and reference.low <= reference.estimate <= reference.high


def test_save_table_keeps_the_laptop_table_for_the_laptop_profile(tmp_path, monkeypatch):
    frame = pd.DataFrame({"f": [4], "psnr": [20.0]})
    monkeypatch.setenv("LDM_LAB_PROFILE", "smoke")
    assert save_table(frame, "autoencoders", tmp_path).name == "autoencoders_smoke.csv"
    monkeypatch.setenv("LDM_LAB_PROFILE", "laptop")
    path = save_table(frame, "autoencoders", tmp_path)
    assert path.name == "autoencoders.csv" and pd.read_csv(path).equals(frame)


def test_discriminator_start_is_the_targets():
    assert discriminator_start("lab-kl-f8") == get_target("lab-kl-f8").loss.disc_start > 0


def test_shipped_table_lists_shipped_names_and_says_what_is_missing():
    messages = []
    table = shipped_table(["lab-ldm-8", "lab-no-such-model"], report=messages.append)
    assert list(table.name) == ["lab-ldm-8"] and table.step.iloc[0] > 0
    asked = ["lab-ldm-8", "lab-ldm-16", "lab-ldm-2"]
    assert list(shipped_table(asked).name) == asked          # the caller's order, not the names' sort order
    assert "ldm-lab ship lab-no-such-model" in messages[0]
    with pytest.raises(RuntimeError, match="ldm-lab ship"):
        shipped_table(["lab-no-such-model"])


def test_ablation_models_keep_comparable_unets():
    models = ablation_models((1, 8, 32))
    assert list(models.index) == ["LDM-1", "LDM-8", "LDM-32"]
    assert list(models["latent (h x w x c)"].str.split("x").str[0]) == ["64", "8", "2"]
    assert models.loc["LDM-1", "first stage"] == "none (pixels)"
    frozen = models["first-stage parameters (frozen)"]
    assert frozen["LDM-1"] == 0 < frozen["LDM-8"]
    counts = models["U-Net parameters"]
    assert counts.max() < 2 * counts.min()  # comparable, as LDM §4.1
