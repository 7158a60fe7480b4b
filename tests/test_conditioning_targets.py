"""The conditioning models' training targets train with ``ldm-lab train NAME --out ...`` (one step, tiny batch) on
their first stages, and sample back with the conditions of their sample grids."""

import pytest
import torch
from PIL import Image

from ldm_lab.cli import main
from ldm_lab.presets import get_preset
from ldm_lab.tasks import get_target, load_run

# Each model decodes with a first stage trained on its own data: the Shapes models share lab-shapes-autoencoder.
CONDITIONING_TARGETS = {"lab-fmnist": "lab-fmnist-autoencoder", "lab-layout": "lab-shapes-autoencoder",
                        "lab-seg": "lab-shapes-autoencoder", "lab-sdxl": "lab-shapes-autoencoder"}


@pytest.mark.parametrize("name", CONDITIONING_TARGETS)
def test_each_model_names_its_first_stage_target_and_is_built_for_its_autoencoder(name):
    target = get_target(name)
    assert target.first_stage == CONDITIONING_TARGETS[name]
    assert get_preset(target.model.preset).autoencoder == get_target(target.first_stage).autoencoder
    # the first stage sees the model's scenes: Shapes' first stage trains on shapes_multiscale, which holds the
    # sharp scenes of lab-layout and lab-seg and the blurred small originals of lab-sdxl
    first_stage_data = get_target(target.first_stage).dataset
    assert first_stage_data == target.dataset or first_stage_data == f"{target.dataset}_multiscale"


def train(name: str, out, first_stage=None) -> None:
    args = ["train", name, "--steps", "1", "--batch-size", "2", "--out", str(out), "--device", "cpu"]
    assert main(args + (["--first-stage", str(first_stage)] if first_stage else [])) == 0


@pytest.fixture(scope="module")
def first_stages(tmp_path_factory):
    runs = tmp_path_factory.mktemp("first_stages")
    for name in set(CONDITIONING_TARGETS.values()):
        train(name, runs / name)
    return runs


@pytest.mark.parametrize("name", CONDITIONING_TARGETS)
def test_target_trains_one_step_on_its_first_stage(name, first_stages, tmp_path):
    train(name, tmp_path / name, first_stages / CONDITIONING_TARGETS[name])
    run = load_run(tmp_path / name, ema=False)
    assert run.step == 1 and 0 < run.model.latent_scale.item() < float("inf")
    assert run.model.preset.resolution == get_target(name).resolution


def test_fashion_mnist_first_stage_is_one_channel_at_32(first_stages):
    autoencoder = load_run(first_stages / "lab-fmnist-autoencoder").model.autoencoder
    assert autoencoder(torch.zeros(1, 1, 32, 32)).reconstruction.shape == (1, 1, 32, 32)


def test_layout_sample_grid_uses_validation_boxes(first_stages, tmp_path):
    target = get_target("lab-layout")
    conditions = target.sample_conditions(3)
    assert set(conditions) == {"boxes", "box_labels"} and len(conditions["boxes"]) == 3
    train("lab-layout", tmp_path / "run", first_stages / CONDITIONING_TARGETS["lab-layout"])
    out = tmp_path / "grid.png"
    assert main(["sample", str(tmp_path / "run"), "--num", "2", "--steps", "1", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 2 * 64


def test_sdxl_trains_on_resized_and_cropped_shapes():
    from ldm_lab.data import build_dataset

    item = build_dataset(get_target("lab-sdxl").dataset, "train", (64, 64))[0]
    assert item["target_size"] == (64, 64) and item["original_size"] != (64, 64)
