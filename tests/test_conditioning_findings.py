"""Notebook 04's computed claims (one rule: intervals apart -> holds / does not hold; overlapping -> undecided),
its calibration rows (real-vs-real FID, the CLIP-score scale), the decoder's ceiling and the attention figure."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

from ldm_lab.checkpoints import read_manifest
from ldm_lab.conditioning.findings import (Estimate, above, autoencoded, ceiling_sentence,
                                           fid_minimum_at_moderate_guidance, findings_table, follows_condition,
                                           guidance_raises_clip_score, size_sharpens)
from ldm_lab.data.shapes import ShapesConfig, ShapesDataset
from ldm_lab.metrics import DualEncoder, to_uint8
from ldm_lab.metrics.adherence import AUTOENCODED, baseline_table, layout_adherence, layout_report
from ldm_lab.metrics.calibration import clip_score_scale, derangement_shift, real_vs_real_point
from ldm_lab.paths import checkpoints_dir

SHIPPED = set(json.loads((checkpoints_dir() / "manifest.json").read_text()))  # the models data/checkpoints holds


def sweep(fids: list[tuple[float, float, float]], clips: list[tuple[float, float, float]],
          scales: tuple[float, ...] = (1.0, 3.0, 8.0)) -> pd.DataFrame:
    """A guidance-sweep table: (estimate, low, high) of FID and CLIP score per scale."""
    return pd.DataFrame([{"guidance_scale": w, "fid": f[0], "fid_ci_low": f[1], "fid_ci_high": f[2], "clip_score": c[0],
                          "clip_score_ci_low": c[1], "clip_score_ci_high": c[2]}
                         for w, f, c in zip(scales, fids, clips)])


def test_the_one_rule_needs_intervals_apart_in_either_direction():
    assert above(Estimate(5, 4, 6), Estimate(2, 1, 3)) is True
    assert above(Estimate(2, 1, 3), Estimate(5, 4, 6)) is False
    assert above(Estimate(5, 3, 6), Estimate(2, 1, 3.5)) is None          # touching intervals overlap
    assert str(Estimate(0.3583, 0.325, 0.392)) == "0.358 [0.325, 0.392]"


def test_clip_score_verdict_compares_the_largest_scale_with_the_smallest_in_any_row_order():
    fid = [(30, 25, 35)] * 3
    rising = sweep(fid, [(50, 48, 52), (60, 58, 62), (66, 64, 68)]).iloc[::-1]
    assert guidance_raises_clip_score(rising).holds is True
    assert "w=1" in guidance_raises_clip_score(rising).evidence and "w=8" in guidance_raises_clip_score(rising).evidence
    assert guidance_raises_clip_score(sweep(fid, [(66, 64, 68), (60, 58, 62), (50, 48, 52)])).holds is False
    assert guidance_raises_clip_score(sweep(fid, [(50, 45, 55), (51, 46, 56), (52, 47, 57)])).holds is None


def test_fid_minimum_holds_for_a_u_shape_fails_for_a_monotone_fall_and_needs_a_middle_scale():
    clip = [(50, 48, 52)] * 3
    assert fid_minimum_at_moderate_guidance(sweep([(40, 38, 42), (20, 18, 22), (35, 33, 37)], clip)).holds is True
    falling = fid_minimum_at_moderate_guidance(sweep([(40, 38, 42), (30, 28, 32), (20, 18, 22)], clip))
    assert falling.holds is False and "w=3" in falling.evidence
    overlapping = sweep([(40, 38, 42), (30, 25, 35), (33, 29, 37)], clip)
    assert fid_minimum_at_moderate_guidance(overlapping).holds is None
    two_scales = sweep([(40, 38, 42), (20, 18, 22)], clip[:2], scales=(1.0, 3.0))
    verdict = fid_minimum_at_moderate_guidance(two_scales)
    assert verdict.holds is None and "no scale between" in verdict.evidence


def adherence_table(generated: tuple[float, float, float], shuffled: tuple[float, float, float],
                    ceiling: tuple[float, float, float] = (0.4, 0.38, 0.42)) -> pd.DataFrame:
    rows = {"real images": (0.83, 0.8, 0.85), AUTOENCODED: ceiling, "generated": generated,
            "generated, shuffled layouts": shuffled}
    return pd.DataFrame([{"condition": c, "metric": "box IoU", "mean": m, "mean_ci_low": lo, "mean_ci_high": hi}
                         for c, (m, lo, hi) in rows.items()])


def test_follows_condition_and_the_ceiling_in_words_are_computed_from_the_table():
    table = adherence_table((0.3, 0.28, 0.32), (0.1, 0.09, 0.12))
    assert follows_condition(table, "box IoU", "boxes are followed").holds is True
    assert follows_condition(adherence_table((0.11, 0.09, 0.13), (0.1, 0.09, 0.12)), "box IoU", "x").holds is None
    sentence = ceiling_sentence(table, "box IoU", "lab-layout")
    assert "0.4 [0.38, 0.42]" in sentence and "48% of the real score" in sentence       # 0.4 / 0.83
    assert "(75% of it)" in sentence and "below the ceiling" in sentence                 # 0.3 / 0.4, apart
    level = ceiling_sentence(adherence_table((0.39, 0.3, 0.45), (0.1, 0.09, 0.12)), "box IoU", "lab-seg")
    assert "level with the ceiling" in level and "reaches what its decoder allows" in level
    over = ceiling_sentence(adherence_table((0.6, 0.5, 0.7), (0.1, 0.09, 0.12)), "box IoU", "lab-seg")
    assert "above the ceiling" in over and "does not bound" in over
    with pytest.raises(ValueError, match="no row"):
        ceiling_sentence(table.iloc[[0, 2, 3]], "box IoU", "lab-layout")
    words = findings_table([follows_condition(table, "box IoU", "boxes are followed")])
    assert list(words.columns) == ["claim", "verdict", "evidence"] and words.verdict[0] == "HOLDS"


def test_size_verdict_needs_rising_means_and_the_ends_apart():
    def table(values):
        return pd.DataFrame([{"original_size": side, "sharpness": v, "sharpness_ci_low": v - 1,
                              "sharpness_ci_high": v + 1} for side, v in zip((128, 16, 32, 64), values)])

    rising = size_sharpens(table([9.0, 2.0, 4.0, 6.0]))           # rows out of order: sorted by size
    assert rising.holds is True and rising.evidence.startswith("sharpness by requested size, 16: 2, 32: 4")
    assert "ends' intervals apart" in rising.evidence
    assert size_sharpens(table([2.0, 9.0, 6.0, 4.0])).holds is False
    assert size_sharpens(table([3.0, 2.5, 2.8, 3.1])).holds is None


def test_size_verdict_with_shared_noise_reads_the_paired_difference_of_the_ends():
    def paired(low, high):
        return pd.DataFrame([{"original_size": side, "sharpness": 1.0, "sharpness_ci_low": 0.5, "sharpness_ci_high": 1.5,
                              "difference": (low + high) / 2 * (side > 16), "difference_ci_low": low * (side > 16),
                              "difference_ci_high": high * (side > 16), "step_ci_low": 0.0, "step_ci_high": 0.1}
                             for side in (16, 64)])

    rising = size_sharpens(paired(0.01, 0.05))
    assert rising.holds is True and "paired difference 64 - 16: 0.03 [0.01, 0.05], above 0" in rising.evidence
    assert size_sharpens(paired(-0.05, -0.01)).holds is False
    assert size_sharpens(paired(-0.01, 0.05)).holds is None
    # the ends apart but one step down: does not hold, and the evidence names the falling step, not the ends
    dip = pd.concat([paired(0.01, 0.05).iloc[:1],
                     pd.DataFrame([{"original_size": 32, "sharpness": 0.9, "difference": -0.02,
                                    "difference_ci_low": -0.03, "difference_ci_high": -0.01, "step": -0.02,
                                    "step_ci_low": -0.03, "step_ci_high": -0.01}]), paired(0.01, 0.05).iloc[1:]])
    falls = size_sharpens(dip)
    assert falls.holds is False and "above 0; but sharpness falls" in falls.evidence and "32 (-0.02" in falls.evidence


def test_layout_report_puts_the_autoencoded_row_between_real_and_generated():
    data = ShapesDataset("val", ShapesConfig(size=(64, 64)))
    items = [data[i] for i in range(6)]
    images, boxes = to_uint8(torch.stack([i["image"] for i in items])), [i["boxes"] for i in items]
    blurred = to_uint8(nn.functional.avg_pool2d(torch.stack([i["image"] for i in items]), 5, 1, 2))
    table = layout_report(torch.full_like(images, 128), images, boxes, autoencoded=blurred)
    assert list(table["condition"]) == ["real images", AUTOENCODED, "generated", "generated, shuffled layouts"]
    ceiling = table.set_index("condition").loc[AUTOENCODED, "mean"]
    assert ceiling == pytest.approx(layout_adherence(blurred, boxes).mean().item(), rel=1e-5)


class _Tower(nn.Module):
    """Image i is all-white or all-black; caption i's embedding is image i's pixels: a perfect, tiny CLIP."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(images.float().flatten(1) / 127.5 - 1, requires_grad=False)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.flatten(1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]


def test_clip_score_scale_scores_own_captions_100_and_opposite_ones_clamped_to_0():
    images = torch.stack([torch.full((3, 4, 4), 255, dtype=torch.uint8), torch.zeros(3, 4, 4, dtype=torch.uint8)])
    captions = ["white", "black"]
    encoder = DualEncoder("toy", _Tower(images), lambda texts: torch.tensor([captions.index(t) for t in texts]),
                          4, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    table = clip_score_scale(images, captions, encoder, num_resamples=10).set_index("pairs")
    assert table.loc["matching pairs", "clip_score"] == pytest.approx(100.0, abs=1e-3)
    assert table.loc["shuffled pairs", "clip_score"] == 0.0
    assert table.loc["shuffled pairs", "share_clamped_to_0"] == 1.0 and table.loc["matching pairs",
                                                                                     "share_clamped_to_0"] == 0.0
    assert derangement_shift(354) == 177
    with pytest.raises(ValueError, match="at least 2"):
        derangement_shift(1)


@pytest.mark.skipif("lab-clip" not in SHIPPED, reason="needs the shipped lab-clip")
def test_real_vs_real_fid_of_another_split_is_below_that_of_noise():
    from ldm_lab.metrics import lab_clip_encoder

    data = ShapesDataset("val", ShapesConfig(size=(64, 64)))
    items = [data[i] for i in range(48)]
    real = to_uint8(torch.stack([i["image"] for i in items[:24]]))
    reference = to_uint8(torch.stack([i["image"] for i in items[24:]]))
    captions = [i["caption"] for i in items[:24]]
    encoder = lab_clip_encoder("cpu")
    noise = to_uint8(torch.rand(real.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    real_row = real_vs_real_point(real, captions, reference, encoder, num_resamples=5)
    noise_row = real_vs_real_point(noise, captions, reference, encoder, num_resamples=5)
    assert real_row["fid"] < noise_row["fid"] and real_row["clip_score"] > noise_row["clip_score"]
    assert real_row["num_samples"] == 24 and real_row["num_real"] == 24


@pytest.mark.skipif("lab-emoji" not in SHIPPED, reason="needs the shipped lab-emoji")
def test_autoencoded_is_seeded_and_shaped_like_its_input():
    from ldm_lab.shipping import load_shipped

    model = load_shipped("lab-emoji", "cpu")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    first, second = autoencoded(model, images, seed=3), autoencoded(model, images, seed=3)
    assert first.shape == images.shape and torch.equal(first, second)
    assert first.min() >= -1 and first.max() <= 1


def test_attention_figure_has_one_colour_scale_and_one_colour_bar():
    from ldm_lab import plotting

    images = [torch.zeros(3, 16, 16), torch.zeros(3, 16, 16)]
    maps = [torch.full((3, 4, 4), 0.1), torch.full((2, 4, 4), 0.6)]
    fig = plotting.attention_per_token(images, maps, [["a", "b", "c"], ["d", "e"]], titles=["x", "y"])
    heat = [ax.images[0] for ax in fig.axes if ax.images and ax.images[0].get_cmap().name == "inferno"]
    assert len(heat) == 5
    for image in heat:
        assert image.get_clim() == (0.0, pytest.approx(0.6))
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 1
