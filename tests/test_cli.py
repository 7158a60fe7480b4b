import json
import re
import subprocess
import sys

import pytest

from ldm_lab.cli import main
from ldm_lab.profiles import check_profile


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ldm_lab.cli", *args], capture_output=True, text=True)


def test_data_info_json_is_one_object_per_dataset():
    result = run_cli("data", "info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert set(info) == {"emoji", "fashion_mnist", "shapes", "shapes_multiscale"}  # multiscale: lab-sdxl's crops
    assert info["emoji"]["num_images"] == 3786 and info["fashion_mnist"]["num_images"] == 70_000
    assert info["fashion_mnist"]["splits"] == {"train": 60_000, "test": 10_000}
    assert sum(info["emoji"]["splits"].values()) == 3786
    assert all(isinstance(entry["available"], bool) for entry in info.values())


def test_data_info_table(capsys):
    assert main(["data", "info"]) == 0
    assert "3,786 images" in capsys.readouterr().out


def test_unknown_dataset_is_a_clear_error(capsys):
    assert main(["data", "fetch", "imagenet"]) == 2
    assert "Valid datasets: emoji, fashion_mnist, shapes" in capsys.readouterr().err


def test_unknown_profile_says_what_to_choose():
    with pytest.raises(ValueError, match="smoke, laptop, gpu"):
        check_profile("fast")


def test_unknown_notebook_lists_the_available_ones(capsys):
    assert main(["notebooks", "42"]) == 2
    assert "no notebook matches" in capsys.readouterr().err


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

