"""Figures and the widget of notebooks 02 and 03 (autoencoders, compression ablation), on small synthetic tables."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
import torch

from ldm_lab import plotting, widgets

FACTORS = (1, 2, 4, 8, 16, 32)


def ablation_table(steps=(500, 1000)) -> pd.DataFrame:
    """Rows as ldm_lab.compression.AblationRow: FID falls with steps, fastest at large f."""
    rows = [dict(f=f, step=step, fid=100 / f ** 0.5 + 1000 / step, fid_ci_low=90 / f ** 0.5 + 1000 / step,
                 fid_ci_high=110 / f ** 0.5 + 1000 / step, train_samples_per_s=2.0 * f, sample_samples_per_s=0.5 * f,
                 feature_space="lab-clip", num_samples=64, throughput_device="cpu")
            for f in FACTORS for step in steps]
    return pd.DataFrame(rows)


def test_factor_colours_are_distinct_and_stable():
    colours = [plotting.factor_colour(f) for f in FACTORS]
    assert len(set(colours)) == len(FACTORS)
    assert plotting.factor_colour(8) == colours[3]


def test_reconstruction_triplet_shows_the_error():
    original = torch.zeros(3, 4, 4)
    reconstruction = original.clone()
    reconstruction[:, 0, 0] = 0.5
    triplet = plotting.reconstruction_triplet(original, reconstruction, gain=4.0)
    assert triplet.shape == (3, 3, 4, 4)
    assert torch.equal(triplet[0], original) and torch.equal(triplet[1], reconstruction)
    assert triplet[2, :, 0, 0].eq(1).all()        # |0.5| x 4 = 2 = the whole [-1, 1] range: white
    assert triplet[2, :, 1:, 1:].eq(-1).all()     # exact: black


def test_metric_vs_factor_draws_ours_and_the_papers_values(tmp_path):
    table = pd.DataFrame([dict(regularizer=r, f=f, psnr=40 - 3 * np.log2(f), psnr_std=1.0, rfid=float(f))
                          for r in ("kl", "vq") for f in FACTORS])
    paper = pd.DataFrame({"regularizer": ["kl", "kl"], "f": [4, 8], "rfid": [0.27, 0.90]})
    fig = plotting.metric_vs_factor(table, ["psnr", "rfid"], paper=paper, save=tmp_path / "tab8.png")
    assert (tmp_path / "tab8.png").stat().st_size > 0
    psnr_panel, rfid_panel, no_paper_psnr, paper_rfid = fig.axes   # the paper's values on panels of their own
    assert len(psnr_panel.containers) == 2            # KL and VQ, with error bars
    plotted = np.asarray(psnr_panel.containers[0].lines[0].get_ydata(), dtype=float)
    np.testing.assert_allclose(plotted, table[table.regularizer == "kl"].psnr.to_numpy())
    assert all(line.get_linestyle() != "--" for line in rfid_panel.lines)  # no paper line on our panel
    assert not no_paper_psnr.axison                                         # the paper has no PSNR here
    np.testing.assert_allclose(np.asarray(paper_rfid.lines[0].get_ydata(), dtype=float), [0.27, 0.90])
    assert "paper" in paper_rfid.get_title() and "ours" in rfid_panel.get_title()


def test_latent_channels_blanks_missing_channels():
    fig = plotting.latent_channels({"f4": torch.randn(3, 16, 16), "f32": torch.randn(64, 2, 2)}, max_channels=8)
    assert len(fig.axes) == 2 * 8
    assert [ax.axison for ax in fig.axes[:8]] == [True] * 3 + [False] * 5
    assert all(ax.axison for ax in fig.axes[8:])
    with_image = plotting.latent_channels({"f4": torch.randn(3, 16, 16)}, image=torch.zeros(3, 64, 64))
    assert len(with_image.axes) == 1 + 3 and with_image.axes[0].get_title() == "image"


def test_latent_histograms_scale_to_unit_variance():
    z = 5.0 * torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    fig = plotting.latent_histograms({"kl-f8": z}, {"kl-f8": 1 / z.std().item()})
    raw, scaled = fig.axes
    assert raw.get_xlim()[1] > 10 and scaled.get_xlim()[1] <= 5.5   # the raw latent is 5x wider


def test_fid_vs_steps_draws_one_line_per_factor_with_its_band():
    table = ablation_table()
    ax = plotting.fid_vs_steps(table).axes[0]
    assert [line.get_label() for line in ax.lines] == [f"LDM-{f}" for f in FACTORS]
    np.testing.assert_allclose(np.asarray(ax.lines[0].get_ydata(), dtype=float), table[table.f == 1].fid.to_numpy())
    assert len(ax.collections) == len(FACTORS)


def test_throughput_bars_label_the_speed_up_over_ldm1():
    fig = plotting.throughput_bars(ablation_table())
    labels = [text.get_text() for text in fig.axes[1].texts]
    assert labels == [f"{f:.1f}x" for f in FACTORS]


def test_quality_vs_speed_places_each_model_at_its_speed_and_fid():
    table = ablation_table(steps=(1000,))
    ax = plotting.quality_vs_speed(table).axes[0]
    points = {text.get_text(): text.xy for text in ax.texts}
    assert points["LDM-8"] == pytest.approx((4.0, 100 / 8 ** 0.5 + 1))
    assert ax.get_title() == "quality vs speed at step 1000"


def test_first_stage_explorer_redraws_on_a_new_choice(monkeypatch):
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    results = {(r, f): types.SimpleNamespace(originals=x, reconstructions=(x + noise).clamp(-1, 1))
               for r in ("kl", "vq") for f, noise in ((4, 0.01), (8, 0.3))}
    titles = []
    drawn = plotting.image_rows
    monkeypatch.setattr(widgets, "image_rows", lambda rows, **kw: titles.append(kw["title"]) or drawn(rows, **kw))
    box = widgets.first_stage_explorer(results, regularizer="kl", f=4)
    (regularizer, factor), image, output = box.children[0].children, box.children[1], box.children[2]
    assert len(output.outputs) == 1 and image.max == 1  # drawn at once; two images to pick from
    factor.value, regularizer.value = 8, "vq"
    assert titles[0].startswith("KL f=4, image 0") and titles[-1].startswith("VQ f=8, image 0")
    psnr = [float(title.split("PSNR ")[1].split(" dB")[0]) for title in (titles[0], titles[-1])]
    assert psnr[0] > psnr[1] + 10  # the noisier reconstruction scores lower


def test_fig7_draws_one_line_per_factor_through_its_sampler_steps(tmp_path):
    rows = [dict(f=f, sampler_steps=steps, seconds_per_image=0.001 * steps / f, fid=50 / f + 100 / steps,
                 fid_ci_low=45 / f + 100 / steps, fid_ci_high=55 / f + 100 / steps, feature_space="lab-clip",
                 num_samples=32, threads=1, device="cpu") for f in (1, 4, 32) for steps in (10, 50, 200)]
    figure = plotting.fid_vs_sampling_time(pd.DataFrame(rows), save=tmp_path / "fig7.png")
    axes = figure.axes[0]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["LDM-1", "LDM-4", "LDM-32"]
    assert sorted(text.get_text() for text in axes.texts) == sorted(["10", "50", "200"] * 3)
    assert axes.get_xscale() == axes.get_yscale() == "log" and (tmp_path / "fig7.png").exists()
