"""The distillation table's readings: row names, Tab. 1's verdicts against each row's reference arm, the 4-step
student "within the teacher's interval" or by how much not, and the quality-against-NFE figure, on a made-up table
(the scorings themselves are model_scores', tested in test_quality)."""

from __future__ import annotations

import pandas as pd
import pytest

from ldm_lab import plotting
from ldm_lab.quality.distillation import ablation_table, read_distillation_table, row_name, run_of, within_interval


def row(model: str, role: str, nfe: int, kid: float, clip: float, arm: str | None = None, half: float = 0.01) -> dict:
    return {"model": model, "role": role, "nfe": nfe, "arm": arm, "updates": 400, "train_cpu_min": 12.0,
            "kid": kid, "kid_ci_low": kid - half, "kid_ci_high": kid + half, "fid": 100 * kid,
            "fid_ci_low": 100 * (kid - half), "fid_ci_high": 100 * (kid + half), "clip_score": clip,
            "clip_score_ci_low": clip - 1, "clip_score_ci_high": clip + 1, "feature_space": "lab-clip",
            "num_generated": 1062}


TABLE = pd.DataFrame([
    row("teacher 2 steps", "teacher", 4, 0.30, 60.0), row("teacher 50 steps", "teacher", 100, 0.10, 74.0),
    row("add 1 step", "student", 1, 0.50, 50.0, "add"),
    row("adversarial-only 1 step", "student", 1, 0.505, 50.5, "adversarial-only"),
    row("distillation-only 1 step", "student", 1, 0.12, 75.0, "distillation-only"),
    row("random-init 1 step", "student", 1, 0.90, 20.0, "random-init"),
    row("lab-emoji-turbo 4 steps", "student", 4, 0.14, 72.0, "distillation-only"),
])


def test_rows_are_named_by_run_folder_and_steps():
    assert row_name("runs/x/lab-emoji-turbo", 1) == "lab-emoji-turbo 1 step"
    assert row_name("teacher", 25) == "teacher 25 steps"
    assert run_of(row_name("runs/lab-emoji-turbo", 1)) == "lab-emoji-turbo" and run_of("lcm 4 steps") == "lcm"


def test_each_arm_is_judged_against_its_rows_reference_by_the_one_rule():
    table = ablation_table(TABLE)
    assert list(table.index) == ["adversarial + distillation (the paper's objective)", "adversarial only",
                                 "distillation only", "random initialisation (distillation only)"]
    worse = table["worse than it?"]
    assert worse.iloc[0] == "(the row's reference)"                # row d's reference
    assert worse.iloc[1] == "kid UNDECIDED, fid UNDECIDED, clip_score UNDECIDED"      # intervals overlap
    assert worse.iloc[2] == "kid DOES NOT HOLD, fid DOES NOT HOLD, clip_score DOES NOT HOLD"  # better, apart
    assert worse.iloc[3] == "kid HOLDS, fid HOLDS, clip_score HOLDS"
    assert table["compared with"].iloc[3] == "distillation-only" and table["paper FID"].iloc[3] == 293.6


def test_within_interval_says_by_how_much_a_student_misses():
    lines = within_interval(TABLE, "lab-emoji-turbo 4 steps", "teacher 50 steps")
    assert lines[0].startswith("kid:") and "NOT within: worse, the intervals 0.02 apart" in lines[0]
    assert "within (intervals overlap)" not in lines[0]
    assert lines[2].endswith("within (intervals overlap)")   # CLIP 72 [71, 73] and 74 [73, 75] touch at 73


def test_a_missing_table_says_how_to_fill_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="--score-teacher"):
        read_distillation_table(tmp_path)


def test_the_nfe_figure_draws_the_teacher_line_and_each_student():
    fig = plotting.quality_vs_nfe(TABLE)
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].get_legend().get_texts()) == 1 + TABLE["arm"].nunique()
