"""The compression ablation's measurements: first-stage rows (Tab. 8), sample quality and throughput rows
(Fig. 6, Tab. 6), result files, and the paper's conclusions checked against tables."""

import math

import pandas as pd
import pytest
import torch

from ldm_lab.compression import (
    AUTOENCODERS_TABLE,
    Measured,
    ablation_row,
    append_rows,
    best_balance,
    check_conclusions,
    kl_ahead_of_vq,
    evaluate_first_stage,
    generate_images,
    lab_first_stage,
    large_factor_stalls,
    latent_scale,
    measure_throughput,
    order,
    pixel_model_behind,
    pixel_model_slow,
    reconstruct,
    reconstruction_falls_with_f,
    rows_frame,
    sample_quality,
    validation_batch,
)
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.metrics import psnr
from ldm_lab.nn.autoencoder import Autoencoder, Regularizer
from ldm_lab.nn.distributions import DiagonalGaussian


@pytest.fixture(scope="module")
def val_batch():
    return validation_batch(8)


def test_validation_batch_is_fixed_and_bounded(val_batch):
    again = validation_batch(8)
    assert torch.equal(val_batch["image"], again["image"]) and val_batch["image"].shape == (8, 3, 64, 64)
    with pytest.raises(ValueError, match="at most"):
        validation_batch(100_000)


def test_latent_scale_is_one_over_std():
    latents = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(0)) / 0.18215  # SD's KL-f8 std
    assert latent_scale(latents) == pytest.approx(0.18215, rel=0.02)


@pytest.mark.parametrize("regularizer", list(Regularizer))
def test_first_stage_row(regularizer, val_batch):
    torch.manual_seed(0)
    autoencoder = Autoencoder(lab_first_stage(regularizer, 8))
    row = evaluate_first_stage(autoencoder, val_batch["image"], "lab-test", batch_size=5)
    result = reconstruct(autoencoder, val_batch["image"], batch_size=3)
    assert row.psnr == pytest.approx(psnr(val_batch["image"], result.reconstructions).mean().item(), rel=1e-5)
    assert (row.f, row.latent_shape, row.compression) == (8, "8x8x4", 64 * 64 * 3 / (8 * 8 * 4))
    assert row.scale_factor * row.latent_std == pytest.approx(1.0)
    assert row.rfid > 0 and row.num_samples == 8 and row.feature_space == "lab-clip"
    if regularizer is Regularizer.VQ:
        used = result.codes.unique().numel()
        assert row.codebook_usage == pytest.approx(used / 1024) and 1 <= row.perplexity <= used
    else:
        assert result.codes is None and math.isnan(row.codebook_usage)


def test_a_perfect_first_stage_scores_perfectly(val_batch):
    """An autoencoder whose posterior is a point mass on the image and whose decoder is the identity."""
    autoencoder = Autoencoder(lab_first_stage(Regularizer.KL, 1))
    certain = torch.full_like(val_batch["image"], -60.0)  # log-variance: std e^-30
    autoencoder.encode = lambda x: DiagonalGaussian.from_moments(torch.cat([x, certain[:len(x)]], dim=1))
    autoencoder.decode = lambda z: z
    row = evaluate_first_stage(autoencoder, val_batch["image"], "identity")
    assert row.psnr == math.inf and row.ssim == pytest.approx(1.0) and abs(row.rfid) < 1e-3


def test_sample_quality_of_identical_and_shifted_features():
    features = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    assert abs(sample_quality(features, features, num_resamples=20).fid.estimate) < 1e-6
    shift = torch.full((16,), 0.5)
    shifted = sample_quality(features, features + shift, num_resamples=20)
    assert shifted.fid.estimate == pytest.approx(shift.square().sum().item(), rel=1e-4)  # equal covariances
    assert shifted.fid.low <= shifted.fid.estimate <= shifted.fid.high
    alike = sample_quality(features, torch.randn(200, 16, generator=torch.Generator().manual_seed(1)),
                           num_resamples=20)
    assert abs(alike.kid) < 3 * alike.kid_std + 0.01 < shifted.kid  # KID is unbiased: ~0 for one distribution


def test_the_fid_interval_contains_its_estimate_at_small_n():
    """At 16 against 16 images every resample repeats images and reads a higher FID than the estimate; the
    percentile interval then lay wholly above it (50.6 [57.7, 58.1] on emoji). The re-centred one contains it."""
    real = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    other = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    fid = sample_quality(real, other, num_resamples=50).fid
    assert fid.low <= fid.estimate <= fid.high and fid.width > 0


def test_generated_images_are_seeded_uint8(untrained_ldm8, val_batch):
    settings = SamplingSettings(sampler="ddim", steps=2, seed=3)
    images = generate_images(untrained_ldm8, val_batch, settings, batch_size=5, progress=False)
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 64, 64)
    assert torch.equal(images, generate_images(untrained_ldm8, val_batch, settings, batch_size=8, progress=False))
    other = generate_images(untrained_ldm8, val_batch, SamplingSettings(sampler="ddim", steps=2, seed=4),
                            progress=False)
    assert not torch.equal(images, other)


def test_throughput_and_ablation_row(tmp_path):
    settings = SamplingSettings(steps=1)
    speed = measure_throughput(32, device="cpu", batch_size=2, settings=settings, repeats=1)
    assert speed.target == "lab-ldm-32" and speed.train_samples_per_s > 0 and speed.sample_samples_per_s > 0
    quality = sample_quality(torch.randn(20, 4), torch.randn(20, 4) + 1, num_resamples=10)
    row = ablation_row(32, 500, quality, settings, speed, device="cpu")
    assert (row.f, row.step, row.fid, row.train_samples_per_s) == (32, 500, quality.fid.estimate,
                                                                   speed.train_samples_per_s)
    assert row.fid_ci_low <= row.fid <= row.fid_ci_high and row.settings == settings.describe()
    with pytest.raises(ValueError, match="not in the compression ablation"):
        ablation_row(3, 500, quality)
    path = append_rows([row], "ablation_test", tmp_path)
    append_rows([ablation_row(16, 500, quality)], "ablation_test", tmp_path)
    table = pd.read_csv(path)
    assert list(table.f) == [32, 16] and math.isnan(table.train_samples_per_s[1])
    assert list(table.columns[-6:]) == [f for f in Measured.__dataclass_fields__]  # metadata last


def test_rows_frame_puts_metadata_last(val_batch):
    row = evaluate_first_stage(Autoencoder(lab_first_stage(Regularizer.VQ, 32)), val_batch["image"], "x")
    frame = rows_frame([row])
    assert frame.columns[0] == "first_stage" and frame.columns[-1] == "timestamp"
    assert AUTOENCODERS_TABLE == "autoencoders"


# --- the paper's conclusions against tables --------------------------------------------------------------------

PAPER_LIKE_FID = {1: (90, 60), 2: (70, 40), 4: (50, 22), 8: (48, 20), 16: (52, 26), 32: (60, 55)}  # steps 500, 1000
PAPER_LIKE_SPEED = {1: (10, 4), 2: (20, 9), 4: (35, 15), 8: (40, 18), 16: (42, 19), 32: (43, 19)}  # train, sample


def ablation_table(fids=PAPER_LIKE_FID, speeds=PAPER_LIKE_SPEED, steps=(500, 1000), ci=1.0) -> pd.DataFrame:
    return pd.DataFrame([{"f": f, "step": step, "fid": fid, "fid_ci_low": fid - ci, "fid_ci_high": fid + ci,
                          "train_samples_per_s": speeds[f][0], "sample_samples_per_s": speeds[f][1]}
                         for f, values in fids.items() for step, fid in zip(steps, values)])


def test_paper_like_numbers_bear_out_every_claim():
    verdicts = check_conclusions(ablation_table())
    assert [v.holds for v in verdicts] == [True, True, True, True], "\n".join(map(str, verdicts))
    assert "LDM-8" in verdicts[0].evidence and "HOLDS" in str(verdicts[0])


def test_a_best_pixel_model_refutes_the_balance_and_the_lag():
    fids = {**PAPER_LIKE_FID, 1: (40, 15)}
    assert not best_balance(ablation_table(fids)).holds
    behind = pixel_model_behind(ablation_table(fids))
    assert behind.holds is False and "LDM-1 15.00" in behind.evidence


def test_overlapping_intervals_are_reported():
    fids = {**PAPER_LIKE_FID, 1: (90, 21)}
    behind = pixel_model_behind(ablation_table(fids, ci=3.0))
    assert "do overlap" in behind.evidence and behind.holds is None  # worse, but not "far" behind


def test_a_fast_pixel_model_is_not_slow():
    speeds = {**PAPER_LIKE_SPEED, 1: (30, 15)}
    assert pixel_model_slow(ablation_table(speeds=speeds)).holds is False


def test_a_still_improving_ldm32_does_not_stall():
    fids = {**PAPER_LIKE_FID, 32: (60, 19)}
    assert large_factor_stalls(ablation_table(fids)).holds is False


def test_missing_numbers_leave_claims_undecided():
    single = ablation_table(steps=(500,), fids={f: v[:1] for f, v in PAPER_LIKE_FID.items()})
    assert large_factor_stalls(single).holds is None
    no_speed = ablation_table().assign(train_samples_per_s=math.nan, sample_samples_per_s=math.nan)
    assert pixel_model_slow(no_speed).holds is None and best_balance(no_speed).holds is None


def test_comparison_uses_the_last_step_every_model_reached():
    table = ablation_table()
    longer = pd.concat([table, pd.DataFrame([dict(table.iloc[-1]) | {"f": 8, "step": 1500, "fid": 1.0}])])
    assert "step 1000" in best_balance(longer).evidence and "LDM-8 20.00" in best_balance(longer).evidence


def test_reconstruction_trend_verdicts():
    rows = [{"regularizer": r, "f": f, "psnr": 40 - 3 * i + (5 if (r, f) == ("vq", 16) else 0), "psnr_std": 1.0,
             "num_samples": 100} for r in ("kl", "vq") for i, f in enumerate((1, 2, 4, 8, 16, 32))]
    kl, vq = reconstruction_falls_with_f(pd.DataFrame(rows))
    assert kl.holds and vq.holds is False and "improves at f=8 31 -> f=16 33" in vq.evidence
    wide = pd.DataFrame(rows).assign(psnr_std=20.0)  # +-3.9 dB: every neighbouring pair overlaps
    assert [v.holds for v in reconstruction_falls_with_f(wide)] == [None, None]
    kl_from_4, _ = reconstruction_falls_with_f(pd.DataFrame(rows), min_f=4)
    assert "f=1:" not in kl_from_4.evidence and "from f=4" in kl_from_4.claim
    kl_to_4, _ = reconstruction_falls_with_f(pd.DataFrame(rows), max_f=4)
    assert "f=8:" not in kl_to_4.evidence and kl_to_4.claim.endswith("up to f=4")
    with pytest.raises(ValueError, match="psnr_std"):
        reconstruction_falls_with_f(pd.DataFrame(rows).drop(columns="psnr_std"))


def test_rfid_gets_worse_by_rising_and_is_judged_by_its_bootstrap_interval():
    rows = [{"regularizer": "vq", "f": f, "rfid": value, "rfid_ci_low": value - half, "rfid_ci_high": value + half}
            for f, value, half in ((4, 1.0, 0.2), (8, 2.0, 0.2), (16, 4.0, 0.2), (32, 3.0, 0.2))]
    rising, = reconstruction_falls_with_f(pd.DataFrame(rows[:3]), "rfid")
    assert rising.holds is True and rising.metric == "rfid"
    falls_at_32, = reconstruction_falls_with_f(pd.DataFrame(rows), "rfid")
    assert falls_at_32.holds is False and "improves at f=16 4 -> f=32 3" in falls_at_32.evidence
    overlapping = pd.DataFrame(rows[:3]).assign(rfid_ci_low=0.0, rfid_ci_high=5.0)
    assert reconstruction_falls_with_f(overlapping, "rfid")[0].holds is None


def test_kl_ahead_of_vq_by_intervals():
    def table(vq_psnr, std=0.5):
        return pd.DataFrame([{"regularizer": r, "f": f, "psnr": 20.0 if r == "kl" else vq_psnr, "psnr_std": std,
                              "num_samples": 100} for r in ("kl", "vq") for f in (4, 8, 16)])
    assert kl_ahead_of_vq(table(19.0)).holds is True
    assert kl_ahead_of_vq(table(21.0)).holds is False
    assert kl_ahead_of_vq(table(19.95)).holds is None and "intervals overlap" in kl_ahead_of_vq(table(19.95)).evidence


def test_the_one_rule_orders_intervals():
    assert order((1, 2), (3, 4)) == -1 and order((3, 4), (1, 2)) == 1 and order((1, 3), (2, 4)) == 0


def test_best_balance_from_point_estimates_alone_is_undecided():
    """The best middle model by point estimate, but LDM-1's interval overlaps it: not decided (it was HOLDS)."""
    fids = {**PAPER_LIKE_FID, 1: (90, 21), 2: (70, 21.5)}
    verdict = best_balance(ablation_table(fids, ci=3.0))
    assert verdict.holds is None and "intervals overlap with LDM-1, LDM-2" in verdict.evidence
    assert pixel_model_behind(ablation_table(fids, ci=3.0)).holds is None


def test_a_better_pixel_model_within_overlapping_intervals_is_undecided():
    fids = {**PAPER_LIKE_FID, 1: (90, 19)}
    assert pixel_model_behind(ablation_table(fids, ci=3.0)).holds is None


def test_ldm32_stalling_needs_intervals_apart():
    fids = {**PAPER_LIKE_FID, 32: (60, 55)}
    assert large_factor_stalls(ablation_table(fids, ci=1.0)).holds is True
    assert large_factor_stalls(ablation_table(fids, ci=8.0)).holds is None  # drops overlap: [-11, 21] vs [12, 44]


def test_final_checkpoints_at_different_steps_are_all_compared():
    """Only final checkpoints, LDM-1 stopped early by a time limit: every model is judged, with its step."""
    table = ablation_table()
    finals = table[table.step == 1000].copy()
    finals.loc[finals.f == 1, "step"] = 800
    verdict = best_balance(finals)
    assert verdict.holds and "800 (LDM-1)" in verdict.evidence and "1000 (LDM-8)" in verdict.evidence
    assert pixel_model_behind(finals).holds
    assert large_factor_stalls(finals).holds is None  # no halfway checkpoints


def test_curve_measures_every_kept_checkpoint_of_ablation_runs(tmp_path, capsys):
    from dataclasses import replace

    from ldm_lab.cli import main
    from ldm_lab.tasks import train_target
    from ldm_lab.tasks.targets.compression import ABLATION_TRAIN
    from ldm_lab.training import TrainConfig

    train_target("lab-vq-f32", tmp_path / "vq", TrainConfig(steps=1, batch_size=2, device="cpu"))
    config = replace(ABLATION_TRAIN, steps=2, batch_size=2, checkpoint_every=1, sample_every=0, device="cpu")
    train_target("lab-ldm-32", tmp_path / "ldm", config, first_stage=tmp_path / "vq")
    out = tmp_path / "curve.csv"
    assert main(["compression-curve", str(tmp_path / "ldm"), str(tmp_path / "vq"), "--out", str(out),
                 "--num-samples", "6", "--steps", "1", "--resamples", "3", "--device", "cpu"]) == 0
    table = pd.read_csv(out)
    assert list(zip(table.f, table.step)) == [(32, 1), (32, 2)] and set(table.num_samples) == {6}
    assert (table.fid_ci_low <= table.fid_ci_high).all() and "skipped" in capsys.readouterr().err

    sampling = tmp_path / "sampling.csv"  # Fig. 7: the last checkpoint, DDIM at each step count, timed
    assert main(["compression-sampling", str(tmp_path / "ldm"), "--out", str(sampling), "--num-samples", "4",
                 "--sampler-steps", "1", "3", "--resamples", "3", "--device", "cpu"]) == 0
    points = pd.read_csv(sampling)
    assert list(zip(points.f, points.step, points.sampler_steps)) == [(32, 2, 1), (32, 2, 3)]
    assert (points.seconds_per_image > 0).all() and points.settings.str.contains("sampler=ddim").all()
    assert "ms/image" in capsys.readouterr().out

    grids = tmp_path / "grids.png"
    assert main(["compression-grids", str(tmp_path / "ldm"), "--steps", "1", "2", "--out", str(grids),
                 "--device", "cpu"]) == 0
    assert grids.read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()
    assert main(["compression-grids", str(tmp_path / "ldm"), "--steps", "7", "--out", str(grids), "--device", "cpu"])
    assert "kept no checkpoint at step(s) [7]; it kept [1, 2]" in capsys.readouterr().err


def test_sampling_times_are_per_image_for_every_model_and_step_count(untrained_ldm8, val_batch):
    from ldm_lab.compression import sampling_times

    batch = {"image": val_batch["image"][:2], "label": val_batch["label"][:2]}
    times = sampling_times({8: untrained_ldm8}, batch, sampler_steps=(1, 50), repeats=2)
    assert list(zip(times.f, times.sampler_steps)) == [(8, 1), (8, 50)] and set(times.batch_size) == {2}
    assert (times.seconds_per_image > 0).all()
    assert times.seconds_per_image.iloc[1] > times.seconds_per_image.iloc[0]  # 50 U-Net calls cost more than one


def test_retimed_keeps_the_recorded_quality_and_takes_the_new_times():
    from ldm_lab.compression import retimed

    recorded = pd.DataFrame({"f": [4, 4, 8], "sampler_steps": [10, 20, 10], "fid": [50.0, 48.0, 40.0],
                             "seconds_per_image": [9.0, 9.0, 9.0], "batch_size": [64] * 3, "threads": [1] * 3})
    times = pd.DataFrame({"f": [4, 8], "sampler_steps": [10, 10], "seconds_per_image": [0.1, 0.05],
                          "batch_size": [8, 8], "threads": [2, 2]})
    table = retimed(recorded, times)
    assert list(zip(table.f, table.fid, table.seconds_per_image, table.batch_size)) == [(4, 50.0, 0.1, 8),
                                                                                      (8, 40.0, 0.05, 8)]
