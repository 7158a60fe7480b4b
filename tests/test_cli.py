import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ldm_lab
from ldm_lab.cli import build_parser, main
from ldm_lab.data import DATASETS
from ldm_lab.profiles import check_profile


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldm_lab.cli", *args], capture_output=True, text=True)


def test_data_info_json_is_one_object_per_dataset():
    result = run_cli("data", "info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    # every dataset this process knows, the SDXL ablations' views of the Shapes scenes included: ldm_lab.data
    # registers them all, so a fresh `data info` lists them too
    assert set(info) == set(DATASETS) >= {"emoji", "fashion_mnist", "shapes", "shapes_multiscale",
                                          "shapes_multiscale_scored"}
    assert info["emoji"]["num_images"] == 3786 and info["fashion_mnist"]["num_images"] == 70_000
    assert info["fashion_mnist"]["splits"] == {"train": 60_000, "test": 10_000}
    assert sum(info["emoji"]["splits"].values()) == 3786
    assert all(isinstance(entry["available"], bool) for entry in info.values())


def test_data_info_table(capsys):
    assert main(["data", "info"]) == 0
    assert "3,786 images" in capsys.readouterr().out


def test_unknown_dataset_is_a_clear_error(capsys):
    assert main(["data", "fetch", "imagenet"]) == 2
    assert "Valid datasets: emoji, emoji_base, emoji_multiscale, fashion_mnist, shapes" in capsys.readouterr().err


def test_unknown_profile_says_what_to_choose():
    with pytest.raises(ValueError, match="smoke, laptop, gpu"):
        check_profile("fast")


def test_unknown_notebook_lists_the_available_ones(capsys):
    assert main(["notebooks", "42"]) == 2
    assert "unknown notebook '42'. Valid notebooks: 00_tour" in capsys.readouterr().err


def test_outputs_go_to_the_scratch_folder_in_tests():
    from ldm_lab.paths import REPO_ROOT, figures_dir, results_dir

    assert not figures_dir().is_relative_to(REPO_ROOT) and not results_dir().is_relative_to(REPO_ROOT)


@pytest.mark.parametrize("command", ["train", "bench"])
def test_the_target_help_lists_exactly_the_registrys_targets(command, capsys, monkeypatch):
    from ldm_lab.tasks import TARGETS, AutoencoderTarget

    monkeypatch.setenv("COLUMNS", "60")  # narrow: names must not be split at their hyphens when the help wraps
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    def names(text: str) -> list[str]:
        return sorted(re.findall(r"(?<![\w-])lab-[\w-]*\w", text))

    arguments = help_text.split("positional arguments:")[1].split("options:")[0]
    assert names(arguments) == sorted(TARGETS)
    assert names(arguments.split("First stages:")[1]) == sorted(
        name for name, target in TARGETS.items() if isinstance(target, AutoencoderTarget))



FOLDED = ["bench.py", "quality/arms.py", "training/selftest.py", "compression/curve.py", "shipping/pack.py",
          "evaluation_models/train_classifier.py", "evaluation_models/train_lab_clip.py", "quality/ablation.py"]


@pytest.mark.parametrize("module", FOLDED)
def test_former_entry_points_are_libraries_whose_command_line_lives_in_cli(module):
    source = (Path(ldm_lab.__file__).parent / module).read_text(encoding="utf-8")
    assert "argparse" not in source and "__main__" not in source


@pytest.mark.parametrize("command", [["quality-arm"], ["ablation-arm"], ["selftest"], ["compression-curve"],
                                     ["compression-sampling"], ["compression-grids"], ["pack"], ["unpack"],
                                     ["train-evaluator", "fmnist-classifier"], ["train-evaluator", "lab-clip"]])
def test_each_command_has_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"usage: ldm-lab {' '.join(command)}")


def test_an_evaluation_model_records_the_command_that_retrains_it():
    from ldm_lab.evaluation_models.retrain import training_command
    from ldm_lab.evaluation_models.train_lab_clip import LabClipTraining

    assert training_command("lab-clip", LabClipTraining()) == "ldm-lab train-evaluator lab-clip"
    assert training_command("lab-clip", LabClipTraining(steps=900, num_shapes=10)) == \
        "ldm-lab train-evaluator lab-clip --steps 900 --num-shapes 10"
    args = build_parser().parse_args(["train-evaluator", "lab-clip", "--steps", "900", "--num-shapes", "10"])
    assert args.func.__name__ == "_train_lab_clip" and (args.steps, args.num_shapes, args.lr) == (900, 10, 1e-3)


def test_an_unknown_ablation_variant_is_refused_before_anything_is_written(tmp_path, capsys):
    assert main(["ablation-arm", "more-layers", "--minutes", "1", "--out", str(tmp_path / "arm")]) != 0
    assert "no-ema" in capsys.readouterr().err and not (tmp_path / "arm").exists()
