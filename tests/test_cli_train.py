"""``ldm-lab train / sample / eval / bench`` end to end on smoke-size budgets, and their error messages."""

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from ldm_lab.cli import main
from ldm_lab.paths import results_dir


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "lab-class"
    assert main(["train", "lab-class", "--steps", "2", "--batch-size", "4", "--out", str(run_dir),
                 "--device", "cpu"]) == 0
    return run_dir


def test_train_writes_a_resumable_run(class_run, capsys):
    assert (class_run / "run.json").is_file() and (class_run / "checkpoints" / "step_000002").is_dir()
    assert main(["train", "lab-class", "--steps", "3", "--batch-size", "4", "--out", str(class_run),
                 "--resume", "--device", "cpu"]) == 0
    assert "lab-class: step 3/3" in capsys.readouterr().out


def test_sample_writes_a_grid(class_run, tmp_path):
    out = tmp_path / "grid.png"
    assert main(["sample", str(class_run), "--class", "3", "--num", "4", "--steps", "2", "--out", str(out)]) == 0
    assert Image.open(out).size == (2 + 2 * 30, 2 + 2 * 30)  # 2 x 2 tiles of 28 px with 2 px borders


def test_eval_appends_fid_and_kid_rows(class_run):
    assert main(["eval", str(class_run), "--num-samples", "8", "--min-samples", "8", "--steps", "2"]) == 0
    table = pd.read_csv(results_dir() / "eval.csv")
    rows = table[table.settings.str.contains(f"run={class_run.name} ")]
    assert set(rows.metric) == {"fid", "kid", "kid_std", "precision", "recall"}
    assert (rows.feature_space == "fmnist-classifier").all() and (rows.num_samples == 8).all()
    assert rows.value.map(math.isfinite).all() and (rows[rows.metric == "fid"].value > 0).all()
    assert rows.settings.str.contains("weights=ema sampler=dpmpp_2m steps=2 guidance=3").all()


def test_eval_can_use_the_raw_weights(class_run):
    assert main(["eval", str(class_run), "--num-samples", "8", "--min-samples", "8", "--steps", "1",
                 "--raw-weights"]) == 0
    table = pd.read_csv(results_dir() / "eval.csv")
    assert table.settings.str.contains("weights=raw sampler=dpmpp_2m steps=1").sum() == 5


def test_bench_appends_well_formed_rows():
    assert main(["bench", "lab-pixel", "lab-autoencoder", "--batch-size", "2", "--steps", "2", "--repeats", "1",
                 "--device", "cpu"]) == 0
    table = pd.read_csv(results_dir() / "bench.csv").tail(2)
    assert list(table.target) == ["lab-pixel", "lab-autoencoder"]
    assert (table.train_samples_per_s > 0).all() and (table.device == "cpu").all()
    assert (table.torch_version == torch.__version__).all() and (table.memory_kind == "cpu_peak_rss_growth").all()
    pixel, autoencoder = table.iloc[0], table.iloc[1]
    assert pixel.sample_samples_per_s > 0 and pixel.sampler == "dpmpp_2m" and pixel.sample_steps == 2
    assert math.isnan(autoencoder.sample_samples_per_s)  # a first stage does not sample
    assert table.git_commit.map(lambda c: isinstance(c, str) and len(c) >= 7).all()


@pytest.mark.parametrize("args, message", [
    (["sample", "{run}", "--prompt", "a shirt"], "lab-class takes no prompts: it is conditioned on a class label"),
    (["sample", "{run}", "--class", "11"], "class 11 is out of range: this model has classes 0..9"),
    (["sample", "{tmp}"], "is not an ldm-lab run directory .* Pass the --out folder"),
    (["eval", "{tmp}"], "is not an ldm-lab run directory"),
    (["train", "lab-clas"], "unknown training target 'lab-clas'. Did you mean 'lab-class'"),
    (["bench", "lab-pix"], "Valid training targets: lab-pixel"),
    (["eval", "{run}", "--num-samples", "20000"], "at most 10000"),
])
def test_errors_say_what_to_change(class_run, tmp_path, capsys, args, message):
    args = [a.format(run=class_run, tmp=tmp_path) for a in args]
    assert main(args) == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable peak RSS")
def test_cpu_peak_memory_measures_a_block_below_an_earlier_peak():
    from ldm_lab.bench import PeakMemory

    # Both sizes exceed glibc's largest mmap threshold (32 MiB), so each gets fresh pages from the kernel
    # instead of reusing memory that earlier tests left resident.
    earlier = torch.ones(128 * 2**18)  # 128 MiB, touched, then freed: the process's peak so far
    del earlier
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(48 * 2**18)  # 48 MiB
        block += 1
    assert 40 < memory.mb < 100
