"""The time-to-quality benchmark's plumbing, with no trained arm: its config and records, the refusal of bad
arguments, the verdict rule, and the scoring of small synthetic image sets in lab-clip's feature space."""

from __future__ import annotations

import math
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from ldm_lab.checkpoints import CheckpointError, parameter_digest, read_manifest
from ldm_lab.cli import main as cli_main
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.files import file_lock
from ldm_lab.metrics import recentred_interval
from ldm_lab.paths import checkpoints_dir
from ldm_lab.quality import benchmark
from ldm_lab.quality.arms import ArmRecord, check_arm
from ldm_lab.quality.benchmark import QualityConfig, recognition_scores, score, score_shipped, verdict
from ldm_lab.shipping import load_shipped
from ldm_lab.shipping.load import shipped_entry

needs_lab_clip = pytest.mark.skipif("lab-clip" not in read_manifest(), reason="needs the shipped lab-clip")


@pytest.mark.parametrize("field", ["minutes", "threads", "seeds", "sampling_steps"])
def test_config_refuses_a_zero_count(field):
    with pytest.raises(ValueError, match="at least 1"):
        QualityConfig(**{field: 0})


def test_arm_record_round_trips_through_its_file(tmp_path):
    assert ArmRecord.load(tmp_path) is None
    record = ArmRecord("ours", 60.0, 1, steps={"first_stage": 1500, "diffusion": 4000},
                       seconds={"first_stage": 1200.5, "diffusion": 2100.25}, images_per_second={"diffusion": 22.5},
                       parameters={"unet": 16_300_000})
    record.save(tmp_path)
    assert ArmRecord.load(tmp_path) == record


def test_unknown_arm_names_the_arms():
    assert check_arm("diffusers") == "diffusers"
    with pytest.raises(ValueError, match="ours, diffusers"):
        check_arm("bogus")


@pytest.mark.parametrize("argv", [["--minutes", "0"], ["--seeds", "0"], ["--threads", "0"]])
def test_quality_command_refuses_zero(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(["quality", *argv])
    assert stop.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_the_arm_command_refuses_bad_arguments_before_writing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["quality-arm", "bogus", "--minutes", "1", "--out", "x"]) == 2
    assert "unknown arm 'bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        cli_main(["quality-arm", "ours", "--minutes", "0", "--out", "x"])
    assert stop.value.code == 2 and "must be a number > 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything was written


def _table(ours: tuple[float, float], diffusers: tuple[float, float]) -> pd.DataFrame:
    rows = [("ours", *ours), ("diffusers", *diffusers), ("real (train split)", 0.0, 0.01)]
    return pd.DataFrame([{"arm": arm, "m": (low + high) / 2, "m_ci_low": low, "m_ci_high": high}
                         for arm, low, high in rows])


@pytest.mark.parametrize(("ours", "diffusers", "lower_is_better", "expected"), [
    ((1.0, 2.0), (3.0, 4.0), True, "ours wins"),           # KID: ours lower, apart
    ((3.0, 4.0), (1.0, 2.0), True, "diffusers wins"),
    ((1.0, 3.0), (2.0, 4.0), True, "undecided"),
    ((3.0, 4.0), (1.0, 2.0), False, "ours wins"),          # CLIP score: ours higher, apart
    ((1.0, 2.0), (3.0, 4.0), False, "diffusers wins"),
    ((2.0, 4.0), (1.0, 3.0), False, "undecided"),
])
def test_verdict_needs_intervals_apart(ours, diffusers, lower_is_better, expected):
    assert verdict(_table(ours, diffusers), "m", lower_is_better).startswith(expected)


def test_recentred_interval_contains_a_shifted_estimate():
    # A statistic that every resample shifts far past its spread, as repeated images shift FID: the interval
    # must still hold the estimate (a percentile interval of these draws lies wholly above it).
    values = np.random.default_rng(0).normal(size=200)

    def shifted(index: np.ndarray, _: np.ndarray) -> float:
        return values[index].mean() + 10.0 * (len(np.unique(index)) < len(index))

    interval = recentred_interval(shifted, (200, 200), num_resamples=50)
    assert interval.low <= interval.estimate <= interval.high
    assert 0 < interval.width < 1


def _blobs(count: int, seed: int, brightness: int = 0) -> torch.Tensor:
    """uint8 ``[count, 3, 64, 64]``: smooth random colour fields (upsampled 4x4 noise), brightened by
    ``brightness``."""
    coarse = torch.rand(count, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 160
    images = torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)
    return (images + brightness).clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def encoder():
    from ldm_lab.metrics import lab_clip_encoder

    return lab_clip_encoder("cpu")


@needs_lab_clip
def test_score_gives_intervals_around_finite_estimates_and_sees_a_shift(encoder):
    from ldm_lab.metrics import extract_features

    real_features = extract_features(_blobs(60, seed=0), "lab-clip")
    captions = ["red apple", "sun", "blue heart"] * 20
    alike = score(_blobs(60, seed=1), captions, real_features, encoder, num_resamples=20)
    shifted = score(_blobs(60, seed=1, brightness=90), captions, real_features, encoder, num_resamples=20)
    for result in (alike, shifted):
        for metric in ("kid", "fid", "clip_score"):
            assert math.isfinite(result[metric])
            assert result[f"{metric}_ci_low"] <= result[metric] <= result[f"{metric}_ci_high"], metric
        assert (result["num_generated"], result["num_real"]) == (60, 60)
    assert shifted["kid"] > alike["kid_ci_high"]
    assert shifted["fid"] > alike["fid_ci_high"]


@needs_lab_clip
def test_held_out_row_scores_real_images_on_their_captions(encoder):
    from ldm_lab.quality.benchmark import held_out_row

    images, captions = _blobs(8, seed=2), ["red apple", "sun"] * 4
    row = held_out_row(images, captions, encoder, num_resamples=20)
    assert row["clip_score_ci_low"] <= row["clip_score"] <= row["clip_score_ci_high"]
    assert "kid" not in row and row["num_real"] == 8


def test_score_shipped_appends_the_model_row_with_its_recorded_training(tmp_path, monkeypatch):
    seen = {}
    def fake_scores(model, name, seeds, settings):  # the 1,062-image scoring itself is tested above
        seen.update(name=name, seeds=seeds, guidance=settings.guidance_scale, trained=not model.training)
        return {"model": name, "kid": 0.2, "kid_ci_low": 0.1, "kid_ci_high": 0.3}
    monkeypatch.setattr(benchmark, "model_scores", fake_scores)
    monkeypatch.setattr(benchmark, "recognition_scores", lambda model, settings: {"recognition_top1": 0.4})
    pd.DataFrame([{"model": "older", "kid": 0.5}]).to_csv(tmp_path / f"{benchmark.MODEL_TABLE}.csv", index=False)
    row = benchmark.score_shipped("lab-emoji", seeds=2, table_folder=tmp_path)
    entry = shipped_entry("lab-emoji")
    assert seen == {"name": "lab-emoji", "seeds": 2, "guidance": 3.0, "trained": True}
    assert row["steps"] == entry.steps and row["training_minutes"] == round(entry.training_seconds / 60, 1)
    benchmark.score_shipped("lab-emoji", table_folder=tmp_path)
    table = pd.read_csv(tmp_path / f"{benchmark.MODEL_TABLE}.csv")
    assert list(table["model"]) == ["older", "lab-emoji", "lab-emoji"]
    assert list(table["steps"])[1:] == [entry.steps] * 2 and list(table["recognition_top1"])[1:] == [0.4, 0.4]
    assert table["recognition_top1"].isna()[0]                 # a row from before the column existed stays empty
    # The row says which first stage decoded the drawings (the same U-Net scores differently through another).
    assert list(table["first_stage_digest"])[1:] == [parameter_digest(load_shipped("lab-emoji").first_stage)[:12]] * 2
    # A model that is not shipped under its name (a teacher): scored from its file, with the training behind it.
    file = read_manifest()["lab-emoji"].file
    row = benchmark.score_shipped("a-teacher", table_folder=tmp_path, reference=checkpoints_dir() / file)
    assert row["steps"] == entry.steps and seen["name"] == "a-teacher"


def test_a_row_waits_for_another_writer_of_the_table_and_adds_its_columns(tmp_path):
    path = tmp_path / "scores.csv"
    with file_lock(tmp_path / "scores.csv.lock"):               # another scoring is writing the table
        writer = threading.Thread(target=benchmark.append_row, args=(path, {"model": "a", "kid": 0.1}))
        writer.start()
        writer.join(timeout=0.5)
        assert writer.is_alive() and not path.exists()
    writer.join()
    benchmark.append_row(path, {"model": "b", "fid": 7.0})
    table = pd.read_csv(path)
    assert list(table["model"]) == ["a", "b"] and table["fid"].isna()[0] and table["kid"].isna()[1]


def test_recognition_ranks_each_drawing_among_all_training_emoji(monkeypatch):
    drawn = []
    prompt_images = benchmark.prompt_images
    monkeypatch.setattr(benchmark, "prompt_images", lambda model, captions, *args: drawn.extend(captions) or
                        prompt_images(model, captions, *args))
    row = recognition_scores(load_shipped("lab-emoji", "cpu"), count=4,
                             settings=SamplingSettings(steps=1, guidance_scale=3.0), num_resamples=10)
    assert len(drawn) == 4 and not any("skin tone" in caption for caption in drawn)  # base emoji only
    assert row["recognition_drawn_from"] == "base emoji"
    for name in ("recognition_top1", "recognition_top5", "recognition_top1_autoencoded"):
        assert 0 <= row[f"{name}_ci_low"] <= row[name] <= row[f"{name}_ci_high"] <= 1
    assert row["recognition_top5"] >= row["recognition_top1"] and row["recognition_captions"] == 4
    assert row["recognition_top5_autoencoded"] >= 0.75          # a reconstruction looks like its own emoji


def test_rows_say_how_their_images_were_drawn():
    assert benchmark.sampling_columns(benchmark.SCORED_SAMPLING) == {"guidance_scale": 3.0, "sampling_steps": 20}
    student = SamplingSettings(sampler="euler_ancestral", timesteps=(999.0, 499.0))
    assert benchmark.sampling_columns(student) == {"guidance_scale": 1.0, "sampling_steps": 2,
                                                   "sampler": "euler_ancestral"}


def test_score_shipped_names_what_is_shipped_for_an_unknown_model(tmp_path):
    with pytest.raises(CheckpointError,
                       match="unknown checkpoint 'lab-emojii'. Did you mean 'lab-emoji'.*"
                             "Valid checkpoints: .*lab-emoji"):
        score_shipped("lab-emojii", table_folder=tmp_path)


def test_two_models_are_compared_by_the_one_rule_in_the_direction_the_claim_says():
    def row(model, kid, recognition):
        return {"model": model, "kid": kid[0], "kid_ci_low": kid[1], "kid_ci_high": kid[2],
                "recognition_top1": recognition[0], "recognition_top1_ci_low": recognition[1],
                "recognition_top1_ci_high": recognition[2]}
    table = pd.DataFrame([row("lab-emoji", (0.5, 0.4, 0.6), (0.1, 0.0, 0.2)),        # an older student row
                          row("lab-emoji-large", (0.13, 0.08, 0.2), (0.3, 0.2, 0.4)),
                          row("lab-emoji", (0.14, 0.09, 0.21), (0.5, 0.45, 0.55))])
    worse = {v.claim.rsplit(" ", 1)[-1]: v.holds
             for v in benchmark.comparison_verdicts(table, "lab-emoji", "lab-emoji-large")}
    assert worse == {"kid": None, "recognition_top1": False}      # overlapping; apart with lab-emoji better
    better = benchmark.comparison_verdicts(table, "lab-emoji", "lab-emoji-large", better=True)
    assert [v.holds for v in better] == [None, True]
    assert better[1].claim == "lab-emoji scores better than lab-emoji-large on recognition_top1"
    table.loc[2, ["kid", "kid_ci_low", "kid_ci_high"]] = (0.3, 0.25, 0.35)
    assert benchmark.comparison_verdicts(table, "lab-emoji", "lab-emoji-large")[0].holds is True  # apart, worse
    with pytest.raises(ValueError, match="no scores recorded for lab-emoji-large"):
        benchmark.comparison_verdicts(table[table["model"] == "lab-emoji"], "lab-emoji", "lab-emoji-large")
