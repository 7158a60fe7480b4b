"""The Stable Diffusion versions in miniature (notebook 05): their presets differ where the versions differ,
the SDXL-like model's multiscale emoji, the inpainting model's inputs and initialisation, and the measures."""

import dataclasses

import pandas as pd
import pytest
import torch

from ldm_lab.data import emoji
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.presets import get_preset, parameter_counts
from ldm_lab.tasks.inpainting import (InpaintingTask, boundary, centre_masks, inpaint, inpaint_by_blending,
                                      inpainting_input, latent_mask, paste, random_masks, seam_energy, widened_input)
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.versions.inpainting import masked_crops
from ldm_lab.versions.miniature import (LINEAGE, at_size, brightness, brightness_verdict, interval_verdict,
                                        lineage_verdicts, x0_estimates)

needs_emoji = pytest.mark.skipif(not emoji.is_available(), reason="emoji data not fetched: run `ldm-lab data fetch "
                                                                   "emoji` (make test does)")


def model(name: str, seed: int = 0) -> LatentDiffusion:
    torch.manual_seed(seed)
    built = LatentDiffusion(LatentDiffusionConfig(name)).eval()
    built.latent_scale.fill_(1.0)
    return built


# ------------------------------------------------------------------------------------------------- presets
def test_sd1_and_sd2_like_differ_where_the_versions_do_and_cost_the_same():
    sd1, sd2 = get_preset("lab-sd1-like"), get_preset("lab-sd2-like")
    assert (sd1.prediction.value, sd2.prediction.value) == ("eps", "v")
    assert (sd1.text_encoders["text"].hidden_layer, sd2.text_encoders["text"].hidden_layer) == (-1, -2)
    assert sd1.text_encoders["text"].final_norm and sd2.text_encoders["text"].final_norm  # SD 2 keeps ln_final
    assert (sd1.unet.num_heads, sd1.unet.head_dim, sd1.unet.use_linear_projection) == (2, None, False)
    assert (sd2.unet.num_heads, sd2.unet.head_dim, sd2.unet.use_linear_projection) == (None, 32, True)
    # heads and projections move no weights (notebook 05, exercise 2)
    assert parameter_counts("lab-sd1-like")["unet"] == parameter_counts("lab-sd2-like")["unet"]
    assert sd1.autoencoder == sd2.autoencoder and sd1.resolution == sd2.resolution == (64, 64)


def test_sdxl_like_concatenates_two_readouts_and_conditions_on_pooled_text_and_sizes():
    preset = get_preset("lab-sdxl-like")
    towers = preset.text_encoders
    assert [(t.hidden_layer, t.final_norm, t.return_pooled) for t in towers.values()] == [(-1, True, False),
                                                                                         (-2, False, True)]
    assert preset.unet.context_dim == sum(t.width for t in towers.values()) == 128
    assert preset.unet.y_dim == towers["text_2"].projection_dim + 6 * 256
    built = model("lab-sdxl-like")
    assert set(built.condition_keys) == {"caption", "original_size", "crop_top_left", "target_size"}
    cond = built.condition({"caption": ["red apple", "cat face"]})
    assert cond["context"].shape == (2, 77, 128) and cond["y"].shape == (2, preset.unet.y_dim)


def test_inpainting_preset_adds_mask_and_masked_latent_channels_only_to_conv_in():
    inpaint, text = parameter_counts("lab-sd1-inpaint")["unet"], parameter_counts("lab-sd1-like")["unet"]
    unet = get_preset("lab-sd1-inpaint").unet
    assert unet.in_channels == 4 + 1 + 4
    assert inpaint - text == 5 * unet.model_channels * 3 * 3


def test_lineage_stages_share_one_network_at_two_resolutions():
    small, large = get_preset("lab-sd1-like-32"), get_preset("lab-sd1-like")
    assert small.unet == large.unet and (small.resolution, large.resolution) == ((32, 32), (64, 64))
    assert model("lab-sd1-like-32").latent_shape == (4, 8, 8)


def test_zero_terminal_snr_model_reaches_pure_noise():
    assert model("lab-sd2-like-ztsnr").schedule.has_zero_terminal_snr
    assert not model("lab-sd2-like").schedule.has_zero_terminal_snr


# --------------------------------------------------------------------------------------- multiscale emoji
@needs_emoji
def test_multiscale_emoji_views_are_fixed_per_item_and_described_by_their_conditions():
    data = emoji.MultiscaleEmoji("train", 64)
    again = emoji.MultiscaleEmoji("train", 64)
    views = [data.view(i) for i in range(40)]
    assert views == [again.view(i) for i in range(40)]
    for (height, width), (top, left) in views:
        assert 16 <= min(height, width) <= 64 and max(height, width) / min(height, width) <= 1.5 + 0.05
        assert top >= 0 and left >= 0
    item = data[3]
    assert item["image"].shape == (3, 64, 64) and item["target_size"] == (64, 64)
    assert (item["original_size"], item["crop_top_left"]) == data.view(3)
    assert item["caption"] == emoji.EmojiDataset("train", 64, skin_tones=False)[3]["caption"]


@needs_emoji
def test_multiscale_emoji_rejects_an_empty_scale_range():
    with pytest.raises(ValueError, match="original_scale"):
        emoji.MultiscaleEmoji("train", 64, original_scale=(0.0, 1.0))


# ------------------------------------------------------------------------------------------------ inpainting
def test_random_masks_are_rectangles_on_the_latent_grid():
    masks = random_masks(16, (64, 64), cell=4, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (16, 1, 64, 64) and set(masks.unique().tolist()) == {0.0, 1.0}
    cells = masks[:, :, ::4, ::4]
    assert torch.equal(cells.repeat_interleave(4, 2).repeat_interleave(4, 3), masks)  # whole 4x4 cells
    covered = masks.mean((1, 2, 3))
    assert (covered > 0.05).all() and (covered < 0.6).all()
    assert random_masks(3, (64, 64), cell=4, full_rate=1.0).eq(1).all()
    with pytest.raises(ValueError, match="multiple of the mask cell"):
        random_masks(1, (30, 30), cell=4)


def test_inpainting_input_is_the_latent_mask_then_the_masked_images_latent():
    inpainter = model("lab-sd1-inpaint")
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    masks = centre_masks(2, (64, 64))
    torch.manual_seed(1)
    condition = inpainting_input(inpainter, images, masks)
    assert condition.shape == (2, 5, 16, 16)
    assert torch.equal(condition[:, :1], latent_mask(inpainter, masks))
    torch.manual_seed(1)  # the KL first stage draws its latent
    assert torch.allclose(condition[:, 1:], inpainter.encode(images * (1 - masks)))
    with pytest.raises(ValueError, match=r"\(b, 1, H, W\)"):
        inpainting_input(inpainter, images, masks[:, :, :32])
    with pytest.raises(ValueError, match="inpainting condition is"):
        inpainter.condition({"caption": ["a"], "inpaint": torch.zeros(1, 4, 16, 16)})


def test_widened_model_starts_out_computing_what_its_text_model_computed():
    text, inpainter = model("lab-sd1-like", seed=0), model("lab-sd1-inpaint", seed=1)
    inpainter.load_state_dict(widened_input(text.state_dict(), inpainter))
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([10, 700])
    context = text.condition({"caption": ["red apple", "sun"]})["context"]
    assert torch.allclose(text(x, t, context=context),
                          inpainter(x, t, context=context, concat=torch.randn(2, 5, 16, 16)), atol=1e-6)
    with pytest.raises(ValueError, match="only more input channels can be added"):
        widened_input(inpainter.state_dict(), text)


def test_inpainting_task_trains_on_masked_batches():
    inpainter = model("lab-sd1-inpaint")
    task = InpaintingTask(sample_prompts=("sun",), sample_num=1)
    batch = {"image": torch.rand(3, 3, 64, 64) * 2 - 1, "caption": ["sun", "car", "tree"]}
    loss = task.loss(inpainter.train(), batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert "image" in task.batch_fields(inpainter)


def test_seam_energy_sees_a_jump_at_the_mask_edge_and_none_in_a_flat_image():
    masks = centre_masks(1, (32, 32))
    flat = torch.zeros(1, 3, 32, 32)
    assert seam_energy(flat, masks).item() == 0
    pasted = paste(torch.ones(1, 3, 32, 32), flat, masks)
    assert seam_energy(pasted, masks).item() > 0.5
    band = boundary(masks)
    assert band.sum() > 0 and not band[0, 0, 16, 16] and not band[0, 0, 0, 0]


def test_masked_crops_are_the_masks_bounding_boxes_at_image_size():
    images = torch.zeros(1, 3, 32, 32)
    images[:, :, 8:24, 8:24] = 1
    crops = masked_crops(images, centre_masks(1, (32, 32)))
    assert crops.shape == (1, 3, 32, 32) and torch.allclose(crops, torch.ones_like(crops))
    with pytest.raises(ValueError, match="empty"):
        masked_crops(images, torch.zeros(1, 1, 32, 32))


# ------------------------------------------------------------------------------------------------- measures
def test_brightness_is_mean_luma_in_unit_range():
    assert brightness(torch.ones(1, 3, 8, 8)).item() == pytest.approx(1.0)
    assert brightness(-torch.ones(1, 3, 8, 8)).item() == pytest.approx(0.0)
    assert at_size(torch.zeros(2, 3, 32, 32), 64).shape == (2, 3, 64, 64)


def test_x0_estimates_one_per_timestep_and_exact_for_a_perfect_v_model():
    v_model = model("lab-sd2-like")
    estimates = x0_estimates(v_model, torch.zeros(2, 3, 64, 64), ["sun", "car"], (999, 500))
    assert estimates.shape == (2, 2, 3, 64, 64)
    # a v-model that predicts v exactly recovers x0 at any timestep: x0 = sqrt(ab) x_t - sqrt(1 - ab) v
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    torch.manual_seed(4)
    z0 = v_model.encode(images)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0))
    def oracle(x_t, t, **cond):
        ab = v_model.schedule.alpha_bar_at(t).view(-1, 1, 1, 1)
        return ab.sqrt() * noise - (1 - ab).sqrt() * z0
    v_model.forward = oracle
    torch.manual_seed(4)
    exact = x0_estimates(v_model, images, ["sun"], (900,), seed=0)[0]
    assert torch.allclose(exact, v_model.decode(z0).clamp(-1, 1), atol=1e-4)


def _sweep(model_name: str, fids, clips) -> pd.DataFrame:
    rows = [{"model": model_name, "guidance_scale": w, "fid": f, "fid_ci_low": f - 2, "fid_ci_high": f + 2,
             "clip_score": c, "clip_score_ci_low": c - 0.5, "clip_score_ci_high": c + 0.5}
            for w, f, c in zip((1.5, 3.0, 8.0), fids, clips, strict=True)]
    return pd.DataFrame(rows)


def test_lineage_verdicts_follow_the_interval_rule():
    sweep = pd.concat([_sweep(LINEAGE[0], (60, 58, 70), (20, 22, 25)), _sweep(LINEAGE[1], (50, 48, 69), (20, 21, 20.5)),
                       _sweep(LINEAGE[2], (49, 40, 45), (21, 24, 28))])
    verdicts = {v.claim: v for v in lineage_verdicts(sweep)}
    assert verdicts[f"{LINEAGE[0]}: guidance raises the CLIP score"].holds is True
    assert verdicts[f"{LINEAGE[1]}: guidance raises the CLIP score"].holds is None
    assert verdicts[f"{LINEAGE[1]} has a lower FID than {LINEAGE[0]}"].holds is True   # apart at 1.5 and 3
    assert verdicts[f"{LINEAGE[2]} has a lower FID than {LINEAGE[1]}"].holds is True   # apart at 3 and 8 only
    assert "w = 3, 8" in verdicts[f"{LINEAGE[2]} has a lower FID than {LINEAGE[1]}"].evidence


def test_brightness_verdict_counts_prompts_decided_by_the_interval_rule():
    def row(name, prompt, gap, half):
        return {"model": name, "prompt": prompt, "gap": gap, "gap_ci_low": gap - half, "gap_ci_high": gap + half}
    table = pd.DataFrame([row("eps", "a", 0.30, 0.02), row("v", "a", 0.05, 0.02),
                          row("eps", "b", 0.20, 0.10), row("v", "b", -0.15, 0.10),
                          row("eps", "c", -0.01, 0.02), row("v", "c", 0.20, 0.02)])
    verdict = brightness_verdict(table, "v", "eps", ("a", "b", "c"))
    assert verdict.holds is None and "1 of 3" in verdict.evidence   # closer on a, farther on c, b overlaps
    assert brightness_verdict(table, "v", "eps", ("a", "b")).holds is True
    assert dataclasses.asdict(verdict)["claim"] == "v draws the dark emoji closer to their real brightness than eps"
    assert "white emoji" in brightness_verdict(table, "v", "eps", ("a",), which="white").claim


def test_mask_blending_with_nothing_masked_returns_the_image_through_the_first_stage():
    text = model("lab-sd1-like")
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.manual_seed(3)
    through = text.decode(text.encode(images)).clamp(-1, 1)
    torch.manual_seed(3)   # the same KL draw of the latent
    kept = inpaint_by_blending(text, images, torch.zeros(2, 1, 64, 64), ["sun", "car"], SamplingSettings(steps=3))
    assert torch.allclose(kept, through, atol=1e-5)


def test_inpaint_refuses_a_model_without_the_mask_condition():
    with pytest.raises(ValueError, match="not an inpainting model"):
        inpaint(model("lab-sd1-like"), torch.zeros(1, 3, 64, 64), centre_masks(1, (64, 64)), ["sun"])


def test_interval_verdict_compares_two_rows_by_their_intervals():
    table = pd.DataFrame([{"method": "a", "fid": 10.0, "fid_ci_low": 8.0, "fid_ci_high": 12.0},
                          {"method": "b", "fid": 20.0, "fid_ci_low": 15.0, "fid_ci_high": 25.0},
                          {"method": "c", "fid": 13.0, "fid_ci_low": 11.0, "fid_ci_high": 16.0}])
    assert interval_verdict(table, "method", "a", "b", "fid").holds is True
    assert interval_verdict(table, "method", "b", "a", "fid").holds is False
    assert interval_verdict(table, "method", "a", "c", "fid").holds is None
    assert interval_verdict(table, "method", "b", "a", "fid", lower_is_better=False).holds is True
