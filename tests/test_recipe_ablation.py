"""The recipe ablation's plumbing without a long run: each variant is exactly one change of lab-emoji's target,
unknown names get the "did you mean" error, the verdict follows the one rule, the table has one row per variant
with its intervals, and one variant really trains for a few seconds (on a 32-image slice) and is scored."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from ldm_lab.checkpoints import read_manifest
from ldm_lab.cli import main as cli_main
from ldm_lab.quality import ablation
from ldm_lab.quality.ablation import (INGREDIENTS, RECIPE, AblationConfig, ablation_table, change_verdict,
                                      check_ingredient, variant_target)
from ldm_lab.quality.arms import ArmRecord
from ldm_lab.tasks.targets import get_target

needs_shipped = pytest.mark.skipif(not {"lab-clip", "lab-autoencoder"} <= set(read_manifest()),
                                   reason="needs the shipped lab-clip and lab-autoencoder")


def _leaves(value, prefix: str = "") -> dict[str, object]:
    """Every field of a (nested) dataclass config by its dotted path (the U-Net config whole); a preset named by a
    string is looked up."""
    from ldm_lab.presets import get_preset

    if prefix.endswith("model.preset") and isinstance(value, str):
        value = get_preset(value)
    if not dataclasses.is_dataclass(value) or prefix.endswith(".unet"):  # the U-Net's size is one ingredient
        return {prefix: value}
    leaves = {}
    for item in dataclasses.fields(value):
        if item.name in ("name", "description"):
            continue
        leaves |= _leaves(getattr(value, item.name), f"{prefix}.{item.name}" if prefix else item.name)
    return leaves


def test_the_recipe_arm_is_lab_emoji_itself():
    assert variant_target(RECIPE) is get_target("lab-emoji-large")


@pytest.mark.parametrize("name", sorted(INGREDIENTS))
def test_each_variant_changes_exactly_one_thing(name):
    recipe, variant = _leaves(get_target("lab-emoji-large")), _leaves(variant_target(name))
    changed = [key for key in recipe if recipe[key] != variant[key]]
    assert len(changed) == 1, changed
    assert variant_target(name).name == f"lab-emoji-large+{name}" and INGREDIENTS[name].description


def test_the_named_ingredients_change_what_they_say():
    assert variant_target("eps").build_model().preset.prediction.value == "eps"
    assert variant_target("zero-terminal-snr").build_model().schedule.has_zero_terminal_snr
    assert variant_target("batch-32").train.batch_size == 32
    assert variant_target("no-ema").train.ema_decay == 0.0
    assert variant_target("no-min-snr").model.snr_gamma is None
    assert not variant_target("no-latent-cache").cache_latents
    small = sum(p.numel() for p in variant_target("unet-small").build_model().unet.parameters())
    assert 1.0e6 < small < 1.5e6


def test_an_unknown_ingredient_says_what_was_meant():
    with pytest.raises(ValueError, match="Did you mean 'no-ema'"):
        check_ingredient("no-emma")
    with pytest.raises(ValueError, match="unet-small"):
        AblationConfig(("unet-smal",))
    with pytest.raises(ValueError, match="at least one"):
        AblationConfig(())


def test_the_command_refuses_an_unknown_ingredient_before_training(tmp_path, capsys):
    assert cli_main(["quality", "--ablation", "epss", "--minutes", "1", "--out", str(tmp_path / "x")]) != 0
    assert "Did you mean 'eps'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert cli_main(["ablation-arm", "bogus", "--minutes", "1", "--out", str(tmp_path / "y")]) != 0
    assert not (tmp_path / "y").exists()


def _row(variant: str, kid: tuple[float, float]) -> dict:
    low, high = kid
    return {"variant": variant, "steps": 10, **{f"{metric}{suffix}": value for metric in ("kid", "fid", "clip_score")
                                                for suffix, value in (("", (low + high) / 2), ("_ci_low", low),
                                                                      ("_ci_high", high))}}


@pytest.mark.parametrize(("recipe", "variant", "lower_is_better", "expected"), [
    ((1.0, 2.0), (3.0, 4.0), True, "hurts"),
    ((3.0, 4.0), (1.0, 2.0), True, "helps"),
    ((1.0, 3.0), (2.0, 4.0), True, "undecided"),
    ((1.0, 2.0), (3.0, 4.0), False, "helps"),
    ((3.0, 4.0), (1.0, 2.0), False, "hurts"),
])
def test_change_verdict_needs_intervals_apart(recipe, variant, lower_is_better, expected):
    assert change_verdict(pd.Series(_row("x", variant)), pd.Series(_row(RECIPE, recipe)), "kid",
                          lower_is_better).startswith(expected)


def test_run_ablation_writes_one_row_per_variant_with_intervals_and_verdicts(tmp_path, monkeypatch):
    from ldm_lab.quality import benchmark

    config = AblationConfig(("eps", "no-ema"), minutes=1, out=tmp_path / "arms")
    kids = {RECIPE: (0.2, 0.3), "eps": (0.5, 0.6), "no-ema": (0.25, 0.35)}
    records = {arm: ArmRecord(arm, 1.0, 1, steps={"diffusion": 5}) for arm in config.arms}
    monkeypatch.setattr(ablation, "train_arms", lambda config, report: records)
    monkeypatch.setattr(benchmark, "held_out_captions", lambda seeds: (torch.zeros(2, 3, 8, 8), ["sun", "pizza"]))
    monkeypatch.setattr(ablation, "extract_features", lambda images, space: images.flatten(1))
    monkeypatch.setattr(ablation, "lab_clip_encoder", lambda: None)
    monkeypatch.setattr(ablation, "arm_row", lambda arm, record, *_: _row(arm, kids[arm]))
    lines = []
    table = ablation.run_ablation(config, report=lines.append, table_folder=tmp_path)
    saved = pd.read_csv(tmp_path / "recipe_ablation.csv")
    assert list(saved["variant"]) == [RECIPE, "eps", "no-ema"]
    assert {"kid_ci_low", "kid_ci_high", "fid_ci_low", "clip_score_ci_high"} <= set(saved.columns)
    verdicts = dict(zip(table["variant"], table["kid_verdict"]))
    assert verdicts["eps"] == "hurts" and verdicts["no-ema"].startswith("undecided")
    assert "hurts" in lines[-1] and "0.550 [0.500, 0.600]" in lines[-1]


@needs_shipped
def test_a_variant_trains_for_its_seconds_and_is_scored_as_the_benchmark_scores(tmp_path, monkeypatch):
    from torch.utils.data import Subset

    from ldm_lab.metrics import extract_features, lab_clip_encoder
    from ldm_lab.quality.benchmark import held_out_captions
    from ldm_lab.tasks import runs

    full = runs.training_dataset
    monkeypatch.setattr(runs, "training_dataset", lambda *args: Subset(full(*args), range(32)))
    out = tmp_path / "unet-small"  # the folder AblationConfig(out=tmp_path) gives that arm
    record = ablation.train_variant("unet-small", minutes=0.05, out=out)
    assert record.steps["diffusion"] >= 1 and record.seconds["diffusion"] < 30
    assert ablation.train_variant("unet-small", minutes=0.05, out=out) == record  # reused, not retrained
    real, captions = held_out_captions(1)
    config = AblationConfig(("unet-small",), out=tmp_path, sampling_steps=2, num_resamples=10)
    row = ablation.arm_row("unet-small", record, config, captions[:8], extract_features(real[:8], "lab-clip"),
                           lab_clip_encoder())
    for metric in ("kid", "fid", "clip_score"):
        slack = 1e-6 * abs(row[metric])  # the recentred interval's ends are computed apart from the estimate
        assert math.isfinite(row[metric])
        assert row[f"{metric}_ci_low"] - slack <= row[metric] <= row[f"{metric}_ci_high"] + slack, metric
    assert row["steps"] == record.steps["diffusion"] and row["parameters"] == record.parameters["unet"]
